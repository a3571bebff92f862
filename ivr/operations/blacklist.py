"""Blocked numbers: patterns with x and a trailing ., per project or global, CSV import."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from rating.errors import InvalidInput, NotFound
from rating.models import BlockedNumber, Project
from rating.numbers import compile_pattern
from rating.store.base import OperatorStore

from .._safe import unneutralise
from ._common import _SEPARATORS, DIRECTIONS


# --- blocked numbers ----------------------------------------------------------
def check_pattern(text: str) -> str:
    """A blocked-number pattern, cleaned (spaces, dashes gone; X as x) and checked: it must be
    well-formed, able to match a real number and not match every number.

    Raises:
        InvalidInput.
    """
    pattern = text.translate(_SEPARATORS).replace("X", "x")
    compile_pattern(pattern)
    body = pattern.removesuffix(".")
    international = body.startswith(("+", "00"))
    rest = body[1:] if body.startswith("+") else body.removeprefix("00")
    if international and rest.startswith("0"):
        raise InvalidInput(f"pattern {pattern!r} can never match: no country code starts with 0")
    if (international and len(rest) > 15) or len(body) > 17:
        raise InvalidInput(f"pattern {pattern!r} can never match: a phone number has at most 15 digits")
    fixed = rest if international else rest.removeprefix("0")
    if pattern.endswith(".") and not fixed[:1].isdigit():
        raise InvalidInput(f"pattern {pattern!r} would block every number; give the first digits"
                           " after the prefix, e.g. 0900. or +41900.")
    return pattern


def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise InvalidInput(f"direction {direction!r}: inbound (callers) or outbound (destinations)")
    return direction


async def blacklist_add(store: OperatorStore, *, project: Project | None, pattern: str, direction: str,
                        reason: str, now_ms: int, added_by: str = "") -> BlockedNumber:
    """Block a number or number block in a project (None: in every project).
    Raises InvalidInput, AlreadyExists."""
    return await store.add_blocked(project_id=project.id if project else None, pattern=check_pattern(pattern),
                                   direction=check_direction(direction), reason=reason.strip(),
                                   added_by=added_by, now_ms=now_ms)


async def blocked_entry(store: OperatorStore, *, project: Project | None, pattern: str,
                        direction: str) -> BlockedNumber:
    """The entry for exactly this scope, pattern and direction. Raises InvalidInput, NotFound."""
    clean = pattern.translate(_SEPARATORS).replace("X", "x")
    compile_pattern(clean)
    check_direction(direction)
    entries = await blocked_list(store, project=project, only_global=project is None,
                                 include_global=False)
    for entry in entries:
        if entry.pattern == clean and entry.direction == direction:
            return entry
    raise NotFound(f"{clean} ({direction}) is not blocked in {project.name if project else 'the global list'}")


async def blacklist_remove(store: OperatorStore, *, project: Project | None, pattern: str,
                           direction: str) -> BlockedNumber:
    entry = await blocked_entry(store, project=project, pattern=pattern, direction=direction)
    await store.blacklist_remove(project_id=entry.project_id, pattern=entry.pattern, direction=entry.direction)
    return entry


async def blocked_list(store: OperatorStore, *, project: Project | None = None, only_global: bool = False,
                       include_global: bool = True, direction: str | None = None) -> list[BlockedNumber]:
    return await store.blocked(project_id=project.id if project else None, only_global=only_global,
                               include_global=include_global,
                               direction=check_direction(direction) if direction else None)


@dataclass(frozen=True)
class BlockedRow:
    line: int
    pattern: str
    direction: str
    reason: str
    added_by: str


BLACKLIST_CSV_COLUMNS = ("pattern", "direction", "reason", "added_by", "added_at", "scope")


def parse_blacklist_csv(text: str, *, source: str, default_by: str) -> list[BlockedRow]:
    """Read and check every row of a blocked-numbers CSV (``pattern`` column required;
    ``direction``, ``reason``, ``added_by`` optional; ``added_at``, ``scope`` ignored; comma
    or semicolon separated). Raises InvalidInput naming the file and line of the first bad row."""
    text = text.removeprefix("\ufeff")
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    header = [(h or "").strip().lower() for h in reader.fieldnames or []]
    if "pattern" not in header:
        raise InvalidInput(f"{source} line 1: the header needs a 'pattern' column"
                           f" (columns: {', '.join(BLACKLIST_CSV_COLUMNS)})")
    unknown = [h for h in header if h not in BLACKLIST_CSV_COLUMNS]
    if unknown:
        raise InvalidInput(f"{source} line 1: unknown column {unknown[0]!r}"
                           f" (columns: {', '.join(BLACKLIST_CSV_COLUMNS)})")
    reader.fieldnames = header
    rows: list[BlockedRow] = []
    seen: dict[tuple[str, str], int] = {}
    for raw in reader:
        line = reader.line_num
        if None in raw:
            raise InvalidInput(f"{source} line {line}: more fields than columns")
        values = {k: unneutralise((v or "").strip()) for k, v in raw.items()}  # our own export's ' prefix
        if not any(values.values()):
            continue
        try:
            row = BlockedRow(line=line, pattern=check_pattern(values.get("pattern", "")),
                             direction=check_direction(values.get("direction") or "inbound"),
                             reason=values.get("reason", ""), added_by=values.get("added_by") or default_by)
        except InvalidInput as exc:
            raise InvalidInput(f"{source} line {line}: {exc}") from None
        key = (row.pattern, row.direction)
        if key in seen:
            raise InvalidInput(f"{source} line {line}: {row.pattern} ({row.direction}) is already on line"
                               f" {seen[key]}")
        seen[key] = line
        rows.append(row)
    if not rows:
        raise InvalidInput(f"{source}: no entries")
    return rows


@dataclass(frozen=True)
class ImportResult:
    added: int
    already_there: int
    removed: int


async def import_blacklist(store: OperatorStore, *, project: Project | None, rows: Sequence[BlockedRow],
                           replace: bool, now_ms: int) -> ImportResult:
    """Add checked rows to a scope in one transaction (with ``replace``: instead of its entries)."""
    added, kept, removed = await store.import_blocked(
        project_id=project.id if project else None,
        entries=[(r.pattern, r.direction, r.reason, r.added_by) for r in rows], replace=replace, now_ms=now_ms)
    return ImportResult(added=added, already_there=kept, removed=removed)
