"""Blocked numbers: patterns with x and a trailing ., per project or global, CSV import."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from rating.errors import AlreadyExists, InvalidInput, NotFound
from rating.models import BlacklistEntry, BlockedNumber, Project
from rating.numbers import block_key, compile_pattern, normalise_block
from rating.store.base import OperatorStore

from .._safe import unneutralise
from ._common import _SEPARATORS, DIRECTIONS


# --- blocked numbers ----------------------------------------------------------
# A block is stored in its E.164 prefix form (rating.numbers.normalise_block), so one
# meaning has one text: duplicates are refused and a removal finds it however it is typed.
# Entries stored before issue 12 (national, duplicates) are read by their meaning in
# their project (rating.numbers.block_key) and are compared, listed and removed by it.
def _clean(text: str) -> str:
    return text.translate(_SEPARATORS).replace("X", "x")


def check_pattern(text: str, region: str | None = None, *, whole_country: bool = False) -> str:
    """A blocked-number pattern, cleaned (spaces, dashes gone; X as x), checked and in its
    E.164 prefix form; a national one means ``region`` (None: refused). See
    ``rating.numbers.normalise_block``.

    Raises:
        InvalidInput.
    """
    return normalise_block(_clean(text), region, whole_country=whole_country)


def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise InvalidInput(f"direction {direction!r}: inbound (callers) or outbound (destinations)")
    return direction


def _scope_text(project: Project | None) -> str:
    return f"project {project.name}" if project else "the global list"


def scope_region(project: Project | None, region: str | None) -> str | None:
    """The region a scope's stored national entries mean: the project's; for the global
    list, the one the operator names (its national entries mean each project's own)."""
    return project.region if project else region


def shown_pattern(entry: BlacklistEntry, region: str | None) -> str:
    """The entry as the engine reads it (E.164 prefix form); a global national entry kept
    from before issue 12 as stored (it means each project's own country)."""
    return block_key(entry.pattern, region) or entry.pattern


async def _scope_entries(store: OperatorStore, project: Project | None, direction: str) -> list[BlockedNumber]:
    return await store.blocked(project_id=project.id if project else None, only_global=project is None,
                               include_global=False, direction=direction)


async def blacklist_add(store: OperatorStore, *, project: Project | None, pattern: str, direction: str,
                        reason: str, now_ms: int, added_by: str = "", region: str | None = None,
                        whole_country: bool = False) -> BlockedNumber:
    """Block a number or number block in a project (None: in every project). A national
    pattern means ``region``, by default the project's; the global list needs it or E.164.

    Raises:
        InvalidInput, AlreadyExists (the scope has an entry of the same meaning, in any form).
    """
    region = (region or (project.region if project else "")).upper() or None
    key = check_pattern(pattern, region, whole_country=whole_country)
    check_direction(direction)
    for entry in await _scope_entries(store, project, direction):
        if block_key(entry.pattern, scope_region(project, region)) == key:
            raise AlreadyExists(f"{key} ({direction}) is already blocked in {_scope_text(project)}"
                                + (f" (as {entry.pattern})" if entry.pattern != key else ""))
    return await store.add_blocked(project_id=project.id if project else None, pattern=key,
                                   direction=direction, reason=reason.strip(), added_by=added_by, now_ms=now_ms)


@dataclass(frozen=True)
class Unblock:
    """What ``blacklist remove PATTERN`` removes: every entry of the scope meaning it."""

    pattern: str                      # the meaning, E.164 prefix form (or the stored text)
    entries: list[BlockedNumber]


async def blocked_entries(store: OperatorStore, *, project: Project | None, pattern: str, direction: str,
                          region: str | None = None) -> Unblock:
    """The entries of exactly this scope and direction that mean ``pattern`` (typed in any
    form: ``0791112244`` in a Swiss project finds ``+41791112244`` and a ``0791112244``
    stored before). Raises InvalidInput, NotFound."""
    clean = _clean(pattern)
    check_direction(direction)
    region = (region or (project.region if project else "")).upper() or None
    entries = await _scope_entries(store, project, direction)
    try:
        key = normalise_block(clean, region, whole_country=True)
    except InvalidInput:
        # A global national entry kept from before issue 12 has no one meaning: its text finds it.
        literal = [e for e in entries if e.pattern == clean]
        if literal:
            return Unblock(pattern=clean, entries=literal)
        raise
    found = [e for e in entries if e.pattern == clean or block_key(e.pattern, scope_region(project, region)) == key]
    if not found:
        raise NotFound(f"{key} ({direction}) is not blocked in {_scope_text(project)}")
    return Unblock(pattern=key, entries=found)


async def blacklist_remove(store: OperatorStore, *, project: Project | None, pattern: str, direction: str,
                           region: str | None = None) -> Unblock:
    """Unblock ``pattern``: every entry of the scope with its meaning. Raises InvalidInput, NotFound."""
    found = await blocked_entries(store, project=project, pattern=pattern, direction=direction, region=region)
    for entry in found.entries:
        await store.blacklist_remove(project_id=entry.project_id, pattern=entry.pattern, direction=entry.direction)
    return found


async def still_blocked_by(store: OperatorStore, *, project: Project | None, number: str,
                           direction: str) -> BlockedNumber | None:
    """The entry that still blocks a number (E.164) after an unblock: a wider block, or a
    global one for a project. None if nothing does (or ``number`` is itself a block)."""
    if "x" in number or number.endswith("."):
        return None
    entries = await store.blocked(project_id=project.id if project else None, only_global=project is None,
                                  direction=direction)
    region = project.region if project else None
    for entry in entries:
        key = block_key(entry.pattern, region)
        if key is not None and compile_pattern(key).match(number):
            return entry
    return None


async def national_blocks(store: OperatorStore, project: Project) -> list[tuple[BlockedNumber, str]]:
    """The project's own entries stored in another form than their meaning (national,
    kept from before issue 12), each with its meaning in the project's region."""
    out = []
    for entry in await store.blocked(project_id=project.id, include_global=False):
        key = block_key(entry.pattern, project.region)
        if key is not None and key != entry.pattern:
            out.append((entry, key))
    return out


async def pin_national_blocks(store: OperatorStore, project: Project) -> list[tuple[BlockedNumber, str]]:
    """Store the project's national entries in their E.164 meaning (before its region
    changes, so that they keep the country they meant). Returns what was rewritten."""
    changed = await national_blocks(store, project)
    for entry, key in changed:
        try:
            await store.add_blocked(project_id=project.id, pattern=key, direction=entry.direction,
                                    reason=entry.reason, added_by=entry.added_by, now_ms=entry.created_ms)
        except AlreadyExists:
            pass  # a duplicate in another form: the E.164 one stays
        await store.blacklist_remove(project_id=project.id, pattern=entry.pattern, direction=entry.direction)
    return changed


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


def parse_blacklist_csv(text: str, *, source: str, default_by: str, region: str | None = None,
                        whole_country: bool = False) -> list[BlockedRow]:
    """Read and check every row of a blocked-numbers CSV (``pattern`` column required;
    ``direction``, ``reason``, ``added_by`` optional; ``added_at``, ``scope`` ignored; comma
    or semicolon separated), each pattern as ``blacklist add`` checks it (national ones mean
    ``region``; whole countries only with ``whole_country``) and in its E.164 prefix form.
    Raises InvalidInput naming the file and line of the first bad row (also two rows of
    the same meaning)."""
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
            row = BlockedRow(line=line, pattern=check_pattern(values.get("pattern", ""), region,
                                                              whole_country=whole_country),
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
                           replace: bool, now_ms: int, region: str | None = None) -> ImportResult:
    """Add checked rows to a scope in one transaction (with ``replace``: instead of its
    entries). A row whose meaning the scope has already, in any form, is already there."""
    there: set[tuple[str | None, str]] = set()
    if not replace:
        for entry in await store.blocked(project_id=project.id if project else None, only_global=project is None,
                                         include_global=False):
            there.add((block_key(entry.pattern, scope_region(project, region)), entry.direction))
    new = [r for r in rows if (r.pattern, r.direction) not in there]
    added, kept, removed = await store.import_blocked(
        project_id=project.id if project else None,
        entries=[(r.pattern, r.direction, r.reason, r.added_by) for r in new], replace=replace, now_ms=now_ms)
    return ImportResult(added=added, already_there=kept + len(rows) - len(new), removed=removed)
