"""``ivr pin-failures list|clear``: the wrong PINs the throttle counts, per project and line."""

from __future__ import annotations

import click

from rating.store.base import OperatorStore

from .. import operations as ops
from ..clock import SystemClock
from ..settings import Settings
from ._app import confirm, emit, json_option, main, plural, with_store, yes_option
from ._format import iso, local, table


@main.group("pin-failures")
def pin_failures() -> None:
    """Wrong PINs the throttle counts (a line or project over its cap hears 'too many attempts')."""


def _line_key(line: str | None, region: str) -> str | None:
    if line is None or line == "anonymous":
        return line
    return ops.normalise(line, region)


@pin_failures.command("list")
@click.option("--project", "project_name", help="Only this project.")
@click.option("--line", help="Only this caller number ('anonymous': withheld numbers).")
@json_option
@with_store
async def pin_failures_list(store: OperatorStore, settings: Settings, *, project_name: str | None,
                            line: str | None, as_json: bool) -> None:
    """Wrong PINs within the throttle's window, most first."""
    p = await ops.project(store, project_name) if project_name else None
    projects = {x.id: x for x in await store.projects()}
    region = p.region if p else next((x.region for x in projects.values()), "DE")
    rows = await ops.pin_failures(store, settings, now_ms=SystemClock().now_ms(), project=p,
                                  line=_line_key(line, region))
    caps = (settings.pin_throttle_failures, settings.pin_throttle_project_failures)

    def name(project_id: int) -> str:
        return projects[project_id].name if project_id in projects else str(project_id)

    data = [{"project": name(r.project_id), "line": r.caller_key, "failures": r.failures,
             "first_at": iso(r.first_ms), "last_at": iso(r.last_ms),
             "line_locked": r.caller_key != "anonymous" and r.failures >= caps[0]} for r in rows]
    emit(as_json, {"window_s": settings.pin_throttle_window_s, "line_cap": caps[0], "project_cap": caps[1],
                   "lines": data},
         table(["PROJECT", "LINE", "WRONG PINS", "FIRST", "LAST", "LOCKED"],
               [[d["project"], d["line"], d["failures"], local(r.first_ms, seconds=True),
                 local(r.last_ms, seconds=True), "yes" if d["line_locked"] else ""] for d, r in zip(data, rows,
                                                                                                    strict=True)],
               right={2}, empty="no wrong PINs in the window"))


@pin_failures.command("clear")
@click.option("--project", "project_name", help="Only this project.")
@click.option("--line", help="Only this caller number ('anonymous': withheld numbers).")
@click.option("--all", "everything", is_flag=True, help="Every project and line.")
@yes_option
@json_option
@with_store
async def pin_failures_clear(store: OperatorStore, settings: Settings, *, project_name: str | None,
                             line: str | None, everything: bool, yes: bool, as_json: bool) -> None:
    """Forget wrong PINs so the throttle lets the line (or the project) in again."""
    if not (project_name or line or everything):
        raise click.UsageError("say what to clear: --project, --line or --all")
    p = await ops.project(store, project_name) if project_name else None
    region = p.region if p else next((x.region for x in await store.projects()), "DE")
    key = _line_key(line, region)
    scope = " and ".join(filter(None, [f"project {p.name}" if p else "", f"line {key}" if key else ""])) or "all"
    confirm(f"Clear the wrong PINs of {scope}? The throttle forgets them.", yes)
    cleared = await ops.clear_pin_failures(store, project=p, line=key)
    emit(as_json, {"cleared": cleared, "project": p.name if p else None, "line": key},
         [f"{plural(cleared, 'wrong PIN')} cleared ({scope})"])
