"""``ivr journal show|replay``: the calls the store could not take when they ended
(locked, disk full, read-only), kept in the engine's state directory until replayed.

``show`` reads only the journal file, so it works while the database does not.
``replay`` writes them to the store in order, exactly once (an engine may be doing
the same: the journal's replay lock makes one wait for the other)."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from rating.errors import StoreUnavailable

from ..clock import SystemClock
from ..journal import Damage, Entry, Journal, replay
from ._app import _open, _settings, emit, json_option, main, plural, run
from ._format import iso, local, table


@main.group()
def journal() -> None:
    """Calls waiting in the settlement journal (the store failed when they ended)."""


def _entry_dict(e: Entry) -> dict[str, Any]:
    return {"entry": e.id, "at": iso(e.at_ms), "uniqueid": e.cdr.uniqueid,
            "card": str(e.cdr.card_id) if e.cdr.card_id is not None else None,
            "hold": str(e.grant.reservation_id) if e.grant else None,
            "reserved_s": e.grant.reserved_s if e.grant else 0, "talk_s": e.cdr.talk_s, "debit_s": e.debit_s,
            "outcome": e.cdr.outcome}


def _damage_dict(d: Damage) -> dict[str, Any]:
    return {"line": d.line, "reason": d.reason, "torn": d.torn}


def _rows(entries: list[Entry]) -> list[list[object]]:
    return [[e.id[:8], local(e.at_ms, seconds=True), e.cdr.uniqueid, e.cdr.card_id or "-",
             e.grant.reservation_id if e.grant else "-", e.cdr.talk_s, e.debit_s, e.cdr.outcome] for e in entries]


_HEADERS = ["entry", "at", "uniqueid", "card", "hold", "talk_s", "debit_s", "outcome"]


@journal.command("show")
@json_option
@click.pass_context
def show(ctx: click.Context, as_json: bool) -> None:
    """List the calls waiting in the journal, and any damaged line."""
    j = Journal(_settings(ctx).state_path)
    contents = j.read()
    data = {"path": str(j.path), "pending": [_entry_dict(e) for e in contents.pending],
            "damaged": [_damage_dict(d) for d in contents.damaged]}
    lines = [f"{j.path}: {plural(len(contents.pending), 'call')} waiting"]
    if contents.pending:
        lines += table(_HEADERS, _rows(contents.pending), right=(5, 6))
    lines += [f"line {d.line}: {d.reason}" for d in contents.damaged]
    emit(as_json, data, lines)


@journal.command("replay")
@json_option
@click.pass_context
def replay_command(ctx: click.Context, as_json: bool) -> None:
    """Write the waiting calls to the store (each exactly once)."""
    settings = _settings(ctx)

    async def go() -> None:
        store = await _open(settings)
        try:
            result = await replay(Journal(settings.state_path), store, offload=asyncio.to_thread,
                                  now_ms=SystemClock().now_ms, wait=True)
        finally:
            await store.close()
        written = [e for e, debited in result.written if debited is not None]
        already = [e for e, debited in result.written if debited is None]
        data = {"replayed": [{**_entry_dict(e), "debited_s": d} for e, d in result.written if d is not None],
                "already_written": [_entry_dict(e) for e in already],
                "refused": [{**_entry_dict(e), "error": err} for e, err in result.failed],
                "left": result.left, "damaged": [_damage_dict(d) for d in result.damaged]}
        debited = sum(d or 0 for _, d in result.written)
        lines = [f"replayed {plural(len(written), 'call')} ({debited} s debited), "
                 f"{len(already)} already written, {result.left} left"]
        lines += [f"refused {e.id[:8]} ({e.cdr.uniqueid}): {err}" for e, err in result.failed]
        lines += [f"line {d.line}: {d.reason}" for d in result.damaged]
        emit(as_json, data, lines)
        if result.stopped is not None:
            raise StoreUnavailable(f"{plural(result.left, 'call')} still waiting: {result.stopped}")

    run(go())
