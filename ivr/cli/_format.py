"""How the CLI writes values: aligned tables and local times for people; ISO 8601 UTC,
integer seconds and integer cents for ``--json``."""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Sequence
from datetime import UTC, datetime

import phonenumbers

from rating.billing import format_money, parse_money
from rating.errors import InvalidInput

from .._safe import csv_row, printable


def iso(ms: int | None) -> str | None:
    """``2026-11-23T14:28:21Z`` (JSON)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def local(ms: int | None, *, seconds: bool = False) -> str:
    """Local time for tables: ``2026-11-23 15:28`` (``-`` for none)."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def hms(seconds: int) -> str:
    """Durations for people: ``1:05:09``."""
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    return f"{sign}{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def long_duration(seconds: int) -> str:
    """``11.4 years``, ``3.2 days``, ``10 hours``, ``5 min``: the order of magnitude people need."""
    for unit, size in (("years", 365 * 86_400), ("days", 86_400), ("hours", 3600)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{max(seconds // 60, 1)} min"


def money(cents: int, currency: str | None) -> str:
    return format_money(cents, currency or "").strip()


def amount(cents: int) -> str:
    """``12.50`` (CSV: no currency)."""
    return format_money(cents, "").strip()


def parse_amount(text: str, *, option: str) -> int:
    """A non-negative amount with at most two decimals, exactly (``parse_money``: Decimal),
    in cents; a single comma is taken as the decimal mark (``0,50``). Raises InvalidInput."""
    cleaned = text.replace(",", ".") if text.count(",") == 1 and "." not in text else text
    try:
        return parse_money(cleaned)
    except ValueError as exc:
        raise InvalidInput(f"{option}: {str(exc).replace(repr(cleaned), repr(text))}") from None


def national_display(e164: str) -> str:
    """The national form people write, with the trunk prefix: ``044 123 45 67``."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, right: Collection[int] = (),
          footer: Sequence[object] | None = None, empty: str = "nothing to show") -> list[str]:
    """Aligned columns; ``right`` lists the columns to right-align (numbers); a ``footer``
    (totals) goes under a rule."""
    if not rows:
        return [empty]
    cells = [["-" if v is None else printable(str(v)) for v in row] for row in [*rows, *([footer] if footer else [])]]
    widths = [max(len(headers[i]), *(len(r[i]) for r in cells)) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if i in right else v.ljust(w)
                         for i, (v, w) in enumerate(zip(values, widths, strict=False))).rstrip()
    rule = line(["-" * w for w in widths])
    body = [line(r) for r in cells]
    if footer:
        body.insert(len(body) - 1, rule)
    return [line(headers), rule, *body]


def csv_text(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(csv_row(row) for row in rows)
    return out.getvalue()
