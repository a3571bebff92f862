"""The engine's own commands, kept as they were when the CLI became a package:
``ivr serve``, ``ivr config show``, ``ivr demo`` and ``ivr call``."""

from __future__ import annotations

import sys
import time
from decimal import Decimal
from typing import Any

import click

from rating.errors import RatingError
from rating.pins import load_or_create_secret
from rating.store.base import OperatorStore

from .. import operations as ops
from ..clock import SystemClock
from ..settings import Settings, SettingsError, load_settings
from ._app import CliError, _fail, _open, _settings, emit, json_option, main, run, with_store
from ._format import hms
from ._types import Seconds


# --- serve -----------------------------------------------------------------
@main.command()
@click.option("--host", help="Listen address (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="FastAGI port (default 4573).")
@click.option("--metrics-host", help="Prometheus address (default 127.0.0.1).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), help="Prometheus port (default 9102, 0 = off).")
@click.option("--grace", "grace_s", type=Seconds(), help="Seconds live calls may go on at shutdown.")
@click.option("--log-format", type=click.Choice(["auto", "json", "console"]),
              help="Log lines on stderr (default auto: console on a terminal, else JSON).")
@click.option("--ami-host", help="Asterisk's AMI address (default: none, AMI off).")
@click.option("--ami-port", type=click.IntRange(1, 65535), help="AMI port (default 5038).")
@click.option("--ami-user", help="AMI user in manager.conf (default ivr-engine).")
@click.option("--ami-secret", help="AMI secret (better: IVR_AMI_SECRET or the TOML file).")
@click.option("--reconcile", "reconcile_s", type=Seconds(0.1, 3600),
              help="Seconds between checks of open holds (default 5).")
@click.pass_context
def serve(ctx: click.Context, /, **flags: Any) -> None:
    """Run the FastAGI engine until SIGTERM / SIGINT."""
    from ..app import run_event_loop
    from ..app import serve as serve_engine
    from ..logs import configure

    root = ctx.find_root()
    try:
        settings = load_settings(root.params.get("config_file"),
                                 overrides={"database": root.params.get("database"), **flags})
    except SettingsError as exc:
        click.echo(f"SettingsError: {exc}", err=True)
        sys.exit(2)
    configure(json={"auto": None, "json": True, "console": False}[settings.log_format],
              level=settings.log_level)
    try:
        run_event_loop(serve_engine(settings), settings.event_loop)
    except SettingsError as exc:
        click.echo(f"SettingsError: {exc}", err=True)
        sys.exit(2)
    except (OSError, RatingError) as exc:  # a busy port (BindError), a corrupt database
        _fail(exc)


@main.group()
def config() -> None:
    """Effective settings."""


@config.command("show")
@json_option
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> None:
    """Print the effective settings (defaults < TOML < IVR_* < flags)."""
    data = _settings(ctx).masked()
    emit(as_json, data, [f"{k} = {v!r}" for k, v in data.items()])


# --- demo and simulated calls ----------------------------------------------
@main.command()
@json_option
@with_store
async def demo(store: OperatorStore, settings: Settings, *, as_json: bool) -> None:
    """Create a demo project (access number +4930123456) and a 10-minute card, once."""
    p = await store.project_by_name("demo")
    created = p is None
    if p is None:
        p = await ops.create_project(store, name="demo", numbers=["+4930123456"],
                                     service="Local/100@prepaid-service/n", language="de", region="DE",
                                     price_per_minute_cents=50, currency="EUR", now_ms=SystemClock().now_ms())
    data: dict[str, Any] = {"project": p.name, "access_number": p.numbers[0], "created": created}
    lines = [f"demo project {'created' if created else 'exists'}: dial {p.numbers[0]}"]
    if created:
        secret = load_or_create_secret(settings.secret_path)
        new = await ops.create_card(store, secret, project=p, minutes=10, note="demo card",
                                    now_ms=SystemClock().now_ms())
        data.update(card=str(new.card.id), pin=new.pin)
        lines.append(f"demo card {new.card.id}, PIN {new.pin} (10 min)")
        lines.append(f"try: ivr call --from +4915112345678 --to {p.numbers[0]} --digits {new.pin}# --talk 30")
    emit(as_json, data, lines)


def main_entry() -> None:  # pragma: no cover - console script alias
    main()


def _fresh_uniqueid() -> str:
    """``epoch.sequence`` as Asterisk writes it; the sequence from the clock's microseconds,
    so two simulated calls never share a uniqueid (CDRs, the ledger and --json key on it)."""
    now_us = time.time_ns() // 1000
    return f"{now_us // 1_000_000}.{now_us % 1_000_000}"


def _dialogue(transcript: list[str]) -> list[str]:
    """The transcript without the ``agi_*`` block Asterisk sends first (``--verbose`` shows it)."""
    return [line for line in transcript
            if not (line.startswith(">> +0ms agi_") or line == ">> +0ms ")]


def _seconds(ms: Any) -> str:
    return "-" if ms is None else f"{int(ms) // 1000} s" if int(ms) % 1000 == 0 else f"{int(ms) / 1000:.1f} s"


@main.command("call")
@click.option("--from", "caller", required=True, help="Caller ID as the network delivers it (or 'anonymous').")
@click.option("--to", "dialled", required=True, help="The access number dialled.")
@click.option("--digits", multiple=True, help="What the caller types at each PIN prompt, e.g. 12345678#.")
@click.option("--answer-after", type=Seconds(), default=2.0, show_default=True, help="Seconds the service rings.")
@click.option("--talk", type=Seconds(), default=30.0, show_default=True, help="Seconds the service talks.")
@click.option("--busy", is_flag=True, help="The service is busy.")
@click.option("--no-answer", is_flag=True, help="The service does not answer.")
@click.option("--hangup-after", type=Seconds(), help="The caller hangs up after this many seconds.")
@click.option("--host", default=None, help="Engine address (default: the serve settings).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Engine FastAGI port (default: the serve settings).")
@click.option("--realtime", is_flag=True, help="Wait as long as a real call would.")
@click.option("--verbose", "-v", is_flag=True, help="Show the raw AGI protocol, the agi_* block included.")
@json_option
@click.pass_context
def call_command(ctx: click.Context, caller: str, dialled: str, digits: tuple[str, ...], answer_after: float,
                 talk: float, busy: bool, no_answer: bool, hangup_after: float | None, host: str | None,
                 port: int | None, realtime: bool, verbose: bool, as_json: bool) -> None:
    """Play one simulated call against a running engine, through the fake Asterisk."""
    from asterisk_sim import CallScript, DialScript, place_call

    if busy and no_answer:
        raise click.UsageError("--busy and --no-answer exclude each other")
    for d in digits:
        if not all(ch in "0123456789*#" for ch in d):
            raise click.UsageError(f"--digits {d!r}: only 0-9, * and #")
    settings = _settings(ctx)
    outcome = "busy" if busy else "noanswer" if no_answer else "answer"
    script = CallScript(caller_id=caller, extension=dialled, digits=list(digits),
                        dials=[DialScript(outcome=outcome, ring_ms=int(answer_after * 1000),
                                          talk_ms=int(talk * 1000))] * 2,
                        hangup_at_ms=int(hangup_after * 1000) if hangup_after is not None else None,
                        time_scale=1.0 if realtime else 0.0,
                        # Each simulated call is a new channel: its own uniqueid (Asterisk's
                        # "epoch.sequence"), and the fake's clock starts at the engine's now,
                        # so IVR_ANSWERED and the CDR's times agree with the engine's.
                        uniqueid=_fresh_uniqueid(), start_epoch=Decimal(SystemClock().now_ms()) / 1000)

    async def go() -> dict[str, Any]:
        try:
            record = await place_call(host or settings.host, port or settings.port, script)
        except OSError as exc:
            raise CliError(f"cannot reach the engine at {host or settings.host}:{port or settings.port}"
                           f" ({exc.strerror or exc}); is `ivr serve` running?") from None
        store = await _open(settings)
        try:
            uniqueid = record.uniqueid if hasattr(record, "uniqueid") else script.uniqueid
            cdr = next((c for c in await store.cdrs(limit=50) if c.uniqueid == uniqueid), None)
            remaining = (await store.card(cdr.card_id)).balance_s if cdr and cdr.card_id else None
        finally:
            await store.close()
        return {
            "uniqueid": uniqueid, "transcript": [f"{d} +{ms}ms {text}" for d, ms, text in record.lines],
            "prompts_played": record.prompts_played, "digits_sent": record.digits_sent,
            "dials": [{k: v for k, v in d.items()} for d in record.dials],
            "outcome": cdr.outcome if cdr else None, "card": str(cdr.card_id) if cdr and cdr.card_id else None,
            "talk_s": cdr.talk_s if cdr else None, "debited_s": cdr.debited_s if cdr else None,
            "remaining_s": remaining, "violations": record.violations,
        }

    data = run(go())
    dialogue = data["transcript"] if verbose else _dialogue(data["transcript"])
    lines = [*dialogue, "",
             f"prompts:   {', '.join(data['prompts_played']) or '-'}",
             f"digits:    {', '.join(d or '(timeout: nothing typed)' for d in data['digits_sent']) or '-'}",
             *[f"dial:      {d.get('dial_string')} -> {d.get('status')} (talk {_seconds(d.get('talk_ms'))})"
               for d in data["dials"]],
             f"outcome:   {data['outcome']}", f"debited:   {data['debited_s']} s",
             f"remaining: {hms(data['remaining_s']) if data['remaining_s'] is not None else '-'}"]
    emit(as_json, data, lines)
