"""``ivr cdr list|report``: the calls, and statistics per month, number, card, outcome,
call type or zone, filtered by period, project, card, number, outcome, call type and
zone; CSV and a PNG chart."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from rating.models import Cdr, Project
from rating.store.base import OperatorStore

from .. import operations as ops
from ..outcome import Outcome
from ..settings import Settings
from ._app import (
    CliError,
    check_new_path,
    emit,
    json_option,
    main,
    note,
    open_new_file,
    with_store,
    yes_option,
)
from ._format import amount, csv_text, hms, iso, local, money, table

CHART_MAX_BARS = 30


@main.group()
def cdr() -> None:
    """Call detail records and statistics."""


def cdr_dict(r: Cdr, projects: Mapping[int, Project]) -> dict[str, Any]:
    """The stable JSON shape of a CDR."""
    p = projects.get(r.project_id) if r.project_id is not None else None
    return {"uniqueid": r.uniqueid, "project": p.name if p else None,
            "card": str(r.card_id) if r.card_id is not None else None, "caller": r.caller_raw,
            "caller_e164": r.caller_e164, "dialled": r.dialled, "destination": r.destination,
            "start": iso(r.start_ms), "answer": iso(r.answer_ms), "end": iso(r.end_ms), "talk_s": r.talk_s,
            "debited_s": r.debited_s, "outcome": r.outcome, "hangup_side": r.hangup_side,
            "call_type": r.call_type, "route": r.route_position, "leg": r.leg, "zone": r.zone,
            "number_type": r.number_type, "factor_pm": r.factor_pm, "quota_used_s": r.quota_used_s,
            "price_per_minute_cents": r.price_per_minute_cents, "currency": r.currency}


def filter_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--from", "since", help="First day (YYYY-MM-DD or DD.MM.YYYY, local time)."),
        click.option("--to", "until", help="Last day, included."),
        click.option("--project", "project_name", help="Only this project's calls."),
        click.option("--card", "card_id", help="Only this card's calls."),
        click.option("--number", help="Only calls from or to this number or x pattern (079123456x, 0900.)."),
        click.option("--outcome", "outcomes", multiple=True,
                     type=click.Choice([o.value.lower() for o in Outcome], case_sensitive=False),
                     help="Only calls that ended so; repeatable."),
        click.option("--type", "call_types", multiple=True, type=click.Choice(ops.CALL_TYPES, case_sensitive=False),
                     help="Only calls of this call type; repeatable."),
        click.option("--zone", "zones", multiple=True, type=click.Choice(ops.ZONES, case_sensitive=False),
                     help="Only calls to this destination zone; repeatable."),
    ]
    return functools.reduce(lambda acc, option: option(acc), reversed(options), f)


async def build_filter(store: OperatorStore, *, since: str | None, until: str | None, project_name: str | None,
                       card_id: str | None, number: str | None, outcomes: tuple[str, ...],
                       call_types: tuple[str, ...] = (), zones: tuple[str, ...] = ()) -> ops.CdrFilter:
    since_ms, until_ms = ops.period_ms(ops.parse_date(since) if since else None,
                                       ops.parse_date(until) if until else None)
    return ops.CdrFilter(
        since_ms=since_ms, until_ms=until_ms,
        project=await ops.project(store, project_name) if project_name else None,
        card_id=(await ops.card(store, card_id)).id if card_id else None, number=number,
        outcomes=tuple(ops.check_outcome(o) for o in outcomes),
        call_types=tuple(ops.check_call_type(t) for t in call_types), zones=tuple(ops.check_zone(z) for z in zones))


def _write_csv(path: str, yes: bool, headers: list[str], rows: list[list[object]]) -> None:
    if path == "-":
        click.echo(csv_text(headers, rows), nl=False)
        return
    with open_new_file(path, yes) as out:
        out.write(csv_text(headers, rows))


CDR_CSV = ["start", "uniqueid", "project", "card", "caller", "caller_e164", "dialled", "destination",
           "answer", "end", "talk_s", "debited_s", "outcome", "hangup_side", "call_type", "route", "leg", "zone",
           "number_type", "factor_pm", "quota_used_s", "price_per_minute", "currency"]


@cdr.command("list")
@filter_options
@click.option("--limit", type=int, default=100, show_default=True, help="The latest this many (0: all).")
@click.option("--csv", "csv_path", metavar="FILE", help="Write the CDRs as CSV to this file ('-': stdout).")
@yes_option
@json_option
@with_store
async def cdr_list(store: OperatorStore, settings: Settings, *, limit: int, csv_path: str | None, yes: bool,
                   as_json: bool, **filters: Any) -> None:
    """The calls, oldest first (the latest --limit of them)."""
    if limit < 0:
        raise click.UsageError("--limit must be 0 or more")
    flt = await build_filter(store, **filters)
    cdrs = await ops.find_cdrs(store, flt, last=limit or None)
    projects = {p.id: p for p in await store.projects()}
    data = [cdr_dict(r, projects) for r in cdrs]
    if csv_path:
        _write_csv(csv_path, yes, CDR_CSV, [[*(d[k] for k in CDR_CSV[:-2]), _price(d), d["currency"]]
                                            for d in data])
        if csv_path == "-":
            return
        note(f"{len(data)} CDRs written to {csv_path}")
    rows = [[local(r.start_ms, seconds=True), d["project"], d["card"], r.caller_e164 or r.caller_raw,
             r.dialled, r.outcome, r.call_type or "-", r.zone or "-", hms(r.talk_s), hms(r.debited_s),
             r.hangup_side] for r, d in zip(cdrs, data, strict=True)]
    emit(as_json, data, table(["START", "PROJECT", "CARD", "CALLER", "DIALLED", "OUTCOME", "TYPE", "ZONE", "TALK",
                               "DEBITED", "ENDED BY"], rows, right={2, 8, 9}, empty="no calls"))


def _price(d: dict[str, Any]) -> str:
    cents = d["price_per_minute_cents"]
    return "" if cents is None else amount(cents)


_KEY_HEADER = {"month": "MONTH", "number": "CALLER", "card": "CARD", "outcome": "OUTCOME",
               "access": "ACCESS NUMBER", "project": "PROJECT", "type": "CALL TYPE", "zone": "ZONE"}


def _row_dict(row: ops.ReportRow) -> dict[str, Any]:
    return {"calls": row.calls, "answered": row.answered, "talk_s": row.talk_s, "debited_s": row.debited_s,
            "revenue_cents": row.revenue_cents}


def report_dict(rep: ops.Report) -> dict[str, Any]:
    """The stable JSON shape of a report."""
    return {"by": rep.by, "currency": rep.currency, "rows": [{"key": r.key, **_row_dict(r)} for r in rep.rows],
            "totals": _row_dict(rep.totals)}


@cdr.command("report")
@click.option("--by", type=click.Choice(ops.REPORT_BY), default="month", show_default=True,
              help="number: the caller; access: the access number dialled; type: the call type;"
                   " zone: the destination zone.")
@filter_options
@click.option("--csv", "csv_path", metavar="FILE", help="Write the report as CSV to this file ('-': stdout).")
@click.option("--chart", "chart_path", metavar="FILE", help="Draw minutes per group into this PNG file.")
@yes_option
@json_option
@with_store
async def cdr_report(store: OperatorStore, settings: Settings, *, by: str, csv_path: str | None,
                     chart_path: str | None, yes: bool, as_json: bool, **filters: Any) -> None:
    """Calls, answered, talk and debited time, revenue (debited time at the price each call was rated at)."""
    if chart_path is not None and Path(chart_path).suffix.lower() != ".png":
        raise click.UsageError("--chart needs a file name ending in .png")
    for path in (chart_path, csv_path):
        if path is not None and path != "-":
            check_new_path(path, yes)  # before any work: refuse to overwrite early
    flt = await build_filter(store, **filters)
    rep = await ops.report(store, await ops.find_cdrs(store, flt), by=by)
    if chart_path is not None:
        if not rep.rows:
            raise CliError("no calls match: no chart written")
        write_chart(rep, chart_path, yes)
        note(f"chart written to {chart_path}")
    if csv_path:
        _write_csv(csv_path, yes, [by, "calls", "answered", "talk_s", "debited_s", "revenue", "currency"],
                   [[r.key, r.calls, r.answered, r.talk_s, r.debited_s, amount(r.revenue_cents), rep.currency]
                    for r in [*rep.rows, rep.totals]])
        if csv_path == "-":
            return
        note(f"report written to {csv_path}")
    emit(as_json, report_dict(rep), _report_lines(rep))


def _report_lines(rep: ops.Report) -> list[str]:
    def cells(r: ops.ReportRow) -> list[object]:
        return [r.key, r.calls, r.answered, hms(r.talk_s), hms(r.debited_s), money(r.revenue_cents, rep.currency)]
    return table([_KEY_HEADER[rep.by], "CALLS", "ANSWERED", "TALK", "DEBITED", "REVENUE"],
                 [cells(r) for r in rep.rows], right={1, 2, 3, 4, 5}, footer=cells(rep.totals),
                 empty="no calls")


class ChartUnavailable(click.ClickException):
    """matplotlib is not installed (it is the optional ``chart`` extra)."""


def write_chart(rep: ops.Report, path: str, yes: bool) -> None:
    """Talk and debited minutes per group as bars, drawn with matplotlib's Agg backend
    (no display needed; the Figure API keeps no global pyplot state)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ChartUnavailable("charts need matplotlib: pip install 'ivr-prepaid[chart]'") from None

    rows = rep.rows if rep.by == "month" else rep.rows[:CHART_MAX_BARS]
    fig = Figure(figsize=(max(6.0, 0.5 * len(rows) + 2), 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    positions = list(range(len(rows)))
    ax.bar([x - 0.2 for x in positions], [r.talk_s / 60 for r in rows], 0.4, label="talk")
    ax.bar([x + 0.2 for x in positions], [r.debited_s / 60 for r in rows], 0.4, label="debited")
    ax.set_xticks(positions, [r.key for r in rows], rotation=45 if len(rows) > 6 else 0,
                  ha="right" if len(rows) > 6 else "center")
    ax.set_ylabel("minutes")
    shown = "" if len(rows) == len(rep.rows) else f" (top {len(rows)} of {len(rep.rows)})"
    ax.set_title(f"Minutes per {_KEY_HEADER[rep.by].lower()}{shown}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(check_new_path(path, yes), format="png")
