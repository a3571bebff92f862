"""The operator's command line: ``ivr …``.

Data to stdout (tables for people, ``--json`` for scripts), logs to stderr.
Exit 0 on success, 1 for an expected failure printed as ``ErrorName: message``,
2 for a usage error (click's own).
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

import click

from rating.billing import BillingRule, format_money, parse_money, price_cents
from rating.errors import RatingError
from rating.models import Card
from rating.pins import load_or_create_secret
from rating.store.sqlite import SqliteStore

from . import operations as ops
from .clock import SystemClock
from .settings import Settings, SettingsError, load_settings

T = TypeVar("T")


class CliError(Exception):
    """An expected failure with a message for the operator."""


def _fail(exc: Exception) -> None:
    click.echo(f"{type(exc).__name__}: {exc}", err=True)
    sys.exit(1)


def _settings(ctx: click.Context) -> Settings:
    obj = ctx.find_root().obj
    return obj["settings"]  # type: ignore[no-any-return]


def run(coro: Awaitable[T]) -> T:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except (RatingError, CliError, SettingsError, ValueError) as exc:
        _fail(exc)
        raise AssertionError("unreachable")


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(f)


def emit(as_json: bool, data: Any, lines: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        for line in lines:
            click.echo(line)


def ts(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def hms(seconds: int) -> str:
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


async def _open(settings: Settings) -> SqliteStore:
    store = SqliteStore(settings.database)
    await store.open()
    return store


def with_store(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """Run ``fn(store, settings, **kwargs)`` with an open store, closing it afterwards."""
    @functools.wraps(fn)
    @click.pass_context
    def wrapper(ctx: click.Context, **kwargs: Any) -> Any:
        settings = _settings(ctx)

        async def go() -> Any:
            store = await _open(settings)
            try:
                return await fn(store, settings, **kwargs)
            finally:
                await store.close()
        return run(go())
    return wrapper


@click.group()
@click.option("--database", envvar="IVR_DATABASE", help="SQLite file (default ./ivr.sqlite3).")
@click.option("--config", "config_file", envvar="IVR_CONFIG", type=click.Path(dir_okay=False),
              help="TOML settings file.")
@click.version_option("0.1.0", prog_name="ivr")
@click.pass_context
def main(ctx: click.Context, database: str | None, config_file: str | None) -> None:
    """Prepaid telephony engine for Asterisk."""
    try:
        settings = load_settings(config_file, overrides={"database": database})
    except SettingsError as exc:
        click.echo(f"SettingsError: {exc}", err=True)
        sys.exit(2)
    ctx.obj = {"settings": settings}


# --- serve -----------------------------------------------------------------
@main.command()
@click.option("--host", help="Listen address (default 127.0.0.1).")
@click.option("--port", type=int, help="FastAGI port (default 4573).")
@click.option("--metrics-host", help="Prometheus address (default 127.0.0.1).")
@click.option("--metrics-port", type=int, help="Prometheus port (default 9102, 0 = off).")
@click.option("--grace", "grace_s", type=float, help="Seconds live calls may go on at shutdown.")
@click.option("--log-format", type=click.Choice(["auto", "json", "console"]))
@click.pass_context
def serve(ctx: click.Context, **flags: Any) -> None:
    """Run the FastAGI engine until SIGTERM / SIGINT."""
    from .app import serve as serve_engine
    from .logs import configure

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
        asyncio.run(serve_engine(settings))
    except OSError as exc:
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


# --- projects --------------------------------------------------------------
@main.group()
def project() -> None:
    """Projects: access numbers, service, prices and rules."""


def _project_dict(p: Any) -> dict[str, Any]:
    return {
        "name": p.name, "numbers": list(p.numbers), "service": p.service, "fallback": p.fallback,
        "ring_timeout_s": p.ring_timeout_s, "language": p.language, "region": p.region,
        "price_per_minute": format_money(p.price_per_minute_cents, p.currency).split()[0],
        "currency": p.currency, "connect_charge_s": p.rule.connect_s, "minimum_s": p.rule.minimum_s,
        "initial_block_s": p.rule.initial_s, "increment_s": p.rule.increment_s, "warning_s": p.warning_s,
        "pin_length": p.pin_length, "max_bound_numbers": p.max_bound_numbers,
        "max_simultaneous_calls": p.max_simultaneous_calls, "card_validity_days": p.card_validity_days,
    }


@project.command("create")
@click.argument("name")
@click.option("--number", "numbers", multiple=True, required=True, help="Access number (repeatable).")
@click.option("--service", required=True, help="Asterisk dial string of the service, e.g. PJSIP/100@office.")
@click.option("--fallback", help="Dial string tried on busy / no answer.")
@click.option("--language", type=click.Choice(["de", "en"]), default="de", show_default=True)
@click.option("--region", default="DE", show_default=True, help="Country for national number forms.")
@click.option("--price-per-minute", default="0", show_default=True, help="Card price per minute, e.g. 0.50.")
@click.option("--currency", default="EUR", show_default=True)
@click.option("--ring-timeout", type=int, default=30, show_default=True)
@click.option("--connect-charge", type=int, default=0, show_default=True, help="Seconds per answered call.")
@click.option("--minimum", type=int, default=0, show_default=True, help="Minimum billable seconds.")
@click.option("--initial-block", type=int, default=1, show_default=True)
@click.option("--increment", type=int, default=1, show_default=True)
@click.option("--warning", type=int, default=60, show_default=True, help="Seconds before cut-off to warn.")
@click.option("--pin-length", type=int, default=8, show_default=True)
@click.option("--max-bound-numbers", type=int, default=3, show_default=True)
@click.option("--max-calls", type=int, default=1, show_default=True, help="Simultaneous calls per card.")
@click.option("--validity-days", type=int, help="Cards expire this many days after purchase.")
@json_option
@with_store
async def project_create(store: SqliteStore, settings: Settings, *, name: str, numbers: tuple[str, ...],
                         service: str, fallback: str | None, language: str, region: str,
                         price_per_minute: str, currency: str, ring_timeout: int, connect_charge: int,
                         minimum: int, initial_block: int, increment: int, warning: int, pin_length: int,
                         max_bound_numbers: int, max_calls: int, validity_days: int | None,
                         as_json: bool) -> None:
    """Create a project."""
    try:
        rule = BillingRule(connect_s=connect_charge, minimum_s=minimum, initial_s=initial_block,
                           increment_s=increment)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    p = await ops.create_project(
        store, name=name, numbers=list(numbers), service=service, fallback=fallback, language=language,
        region=region, price_per_minute_cents=parse_money(price_per_minute), currency=currency, rule=rule,
        ring_timeout_s=ring_timeout, warning_s=warning, pin_length=pin_length,
        max_bound_numbers=max_bound_numbers, max_simultaneous_calls=max_calls,
        card_validity_days=validity_days, now_ms=SystemClock().now_ms())
    data = _project_dict(p)
    emit(as_json, data, [f"project {p.name} created", *[f"  {k}: {v}" for k, v in data.items()]])


@project.command("list")
@json_option
@with_store
async def project_list(store: SqliteStore, settings: Settings, *, as_json: bool) -> None:
    """List projects."""
    projects = [_project_dict(p) for p in await store.projects()]
    emit(as_json, projects, [f"{p['name']:<16} {', '.join(p['numbers']):<30} {p['service']}" for p in projects]
         or ["no projects"])


@project.command("show")
@click.argument("name")
@json_option
@with_store
async def project_show(store: SqliteStore, settings: Settings, *, name: str, as_json: bool) -> None:
    """Show one project."""
    data = _project_dict(await ops.project(store, name))
    emit(as_json, data, [f"{k}: {v}" for k, v in data.items()])


# --- cards -----------------------------------------------------------------
@main.group()
def card() -> None:
    """Prepaid minute cards."""


async def _card_dict(store: SqliteStore, c: Card, *, now_ms: int) -> dict[str, Any]:
    p = await store.project_by_id(c.project_id)
    assert p is not None
    bindings = await store.bindings(c.id)
    return {
        "card": str(c.id), "project": p.name, "note": c.note, "status": c.status(now_ms).value,
        "remaining_s": c.balance_s, "remaining": hms(c.balance_s), "in_calls": c.active_calls,
        "price": format_money(c.price_cents, p.currency), "created_at": ts(c.created_ms),
        "activated_at": ts(c.activated_ms), "expires_at": ts(c.expires_ms),
        "bound_numbers": [{"number": b.caller, "bound_at": ts(b.bound_ms), "by": b.source} for b in bindings],
    }


@card.command("create")
@click.option("--project", "project_name", required=True)
@click.option("--minutes", type=int, required=True)
@click.option("--note", default="", help="Free text to recognise the card, e.g. the holder.")
@json_option
@with_store
async def card_create(store: SqliteStore, settings: Settings, *, project_name: str, minutes: int, note: str,
                      as_json: bool) -> None:
    """Buy a card: prints its id and PIN (shown only now)."""
    p = await ops.project(store, project_name)
    secret = load_or_create_secret(settings.secret_path)
    new = await ops.create_card(store, secret, project=p, minutes=minutes, note=note,
                                now_ms=SystemClock().now_ms())
    c = new.card
    data = {"card": str(c.id), "pin": new.pin, "project": p.name, "note": c.note, "minutes": minutes,
            "seconds": c.balance_s, "price": format_money(c.price_cents, p.currency),
            "price_cents": c.price_cents, "currency": p.currency, "expires_at": ts(c.expires_ms)}
    emit(as_json, data, [f"card {c.id} created for project {p.name}",
                         f"  PIN:     {new.pin}   (shown once, write it down)",
                         f"  time:    {minutes} min ({c.balance_s} s)",
                         f"  price:   {data['price']}", f"  note:    {c.note}"])


@card.command("quote")
@click.option("--project", "project_name", required=True)
@click.option("--minutes", type=int, required=True)
@json_option
@with_store
async def card_quote(store: SqliteStore, settings: Settings, *, project_name: str, minutes: int,
                     as_json: bool) -> None:
    """Compute a card's price, changing nothing."""
    p = await ops.project(store, project_name)
    cents = price_cents(ops.check_minutes(minutes) * 60, p.price_per_minute_cents)
    emit(as_json, {"project": p.name, "minutes": minutes, "price": format_money(cents, p.currency),
                   "price_cents": cents, "currency": p.currency},
         [f"{minutes} min in {p.name}: {format_money(cents, p.currency)}"])


@card.command("show")
@click.argument("card_id")
@json_option
@with_store
async def card_show(store: SqliteStore, settings: Settings, *, card_id: str, as_json: bool) -> None:
    """Remaining time, status, activation, bound numbers, ledger and last calls."""
    c = await ops.card(store, card_id)
    now = SystemClock().now_ms()
    data = await _card_dict(store, c, now_ms=now)
    data["ledger"] = [{"at": ts(e.at_ms), "kind": e.kind, "seconds": e.seconds, "amount_cents": e.amount_cents,
                       "reference": e.reference} for e in await store.ledger(c.id)]
    data["last_calls"] = [{"uniqueid": r.uniqueid, "start": ts(r.start_ms), "caller": r.caller_raw,
                           "outcome": r.outcome, "talk_s": r.talk_s, "debited_s": r.debited_s}
                          for r in await store.cdrs(card_id=c.id, limit=10)]
    lines = [f"card {data['card']} ({data['project']}) — {data['note']}",
             f"  status:     {data['status']}", f"  remaining:  {data['remaining']} ({c.balance_s} s)",
             f"  price:      {data['price']}", f"  activated:  {data['activated_at'] or 'not yet'}",
             f"  expires:    {data['expires_at'] or 'never'}", "  bound numbers:"]
    lines += [f"    {b['number']}  since {b['bound_at']} by {b['by']}" for b in data["bound_numbers"]] or ["    none"]
    lines += ["  ledger:"] + [f"    {e['at']}  {e['kind']:<10} {e['seconds']:>+8} s  {e['reference']}"
                              for e in data["ledger"]]
    lines += ["  last calls:"] + [f"    {r['start']}  {r['caller']:<16} {r['outcome']:<14} talk {r['talk_s']} s,"
                                  f" debited {r['debited_s']} s" for r in data["last_calls"]]
    emit(as_json, data, lines)


@card.command("list")
@click.option("--project", "project_name")
@json_option
@with_store
async def card_list(store: SqliteStore, settings: Settings, *, project_name: str | None, as_json: bool) -> None:
    """List cards."""
    p = await ops.project(store, project_name) if project_name else None
    now = SystemClock().now_ms()
    rows = [await _card_dict(store, c, now_ms=now) for c in await store.cards(p.id if p else None)]
    emit(as_json, rows, [f"{r['card']:>6}  {r['project']:<12} {r['status']:<10} {r['remaining']:>10}  {r['note']}"
                         for r in rows] or ["no cards"])


@card.command("bind")
@click.argument("card_id")
@click.argument("number")
@json_option
@with_store
async def card_bind(store: SqliteStore, settings: Settings, *, card_id: str, number: str, as_json: bool) -> None:
    """Bind a caller's number to the card by hand (no PIN call needed)."""
    c = await ops.card(store, card_id)
    e164 = await ops.bind(store, card=c, number=number, now_ms=SystemClock().now_ms())
    emit(as_json, {"card": str(c.id), "number": e164, "by": "operator"},
         [f"{e164} bound to card {c.id}",
          "note: this must be the caller ID the network really delivers for that line"])


@card.command("recharge")
@click.argument("card_id")
@click.option("--minutes", type=int, required=True)
@json_option
@with_store
async def card_recharge(store: SqliteStore, settings: Settings, *, card_id: str, minutes: int,
                        as_json: bool) -> None:
    """Add minutes to a card (priced like a purchase)."""
    c = await ops.card(store, card_id)
    p = await store.project_by_id(c.project_id)
    assert p is not None
    seconds = ops.check_minutes(minutes) * 60
    cents = price_cents(seconds, p.price_per_minute_cents)
    c = await store.recharge(c.id, seconds, cents, SystemClock().now_ms())
    emit(as_json, {"card": str(c.id), "added_s": seconds, "remaining_s": c.balance_s,
                   "price": format_money(cents, p.currency)},
         [f"card {c.id}: +{minutes} min, now {hms(c.balance_s)} ({format_money(cents, p.currency)})"])


@card.command("block")
@click.argument("card_id")
@json_option
@with_store
async def card_block(store: SqliteStore, settings: Settings, *, card_id: str, as_json: bool) -> None:
    """Block a card: its callers hear that it is blocked."""
    c = await ops.card(store, card_id)
    await store.set_blocked(c.id, True)
    emit(as_json, {"card": str(c.id), "blocked": True}, [f"card {c.id} blocked"])


@card.command("unblock")
@click.argument("card_id")
@json_option
@with_store
async def card_unblock(store: SqliteStore, settings: Settings, *, card_id: str, as_json: bool) -> None:
    """Unblock a card."""
    c = await ops.card(store, card_id)
    await store.set_blocked(c.id, False)
    emit(as_json, {"card": str(c.id), "blocked": False}, [f"card {c.id} unblocked"])


# --- blacklist -------------------------------------------------------------
@main.group()
def blacklist() -> None:
    """Blocked numbers: digits, x for any digit (04412345x), trailing . for anything more."""


def _scope(project_name: str | None, is_global: bool) -> None:
    if bool(project_name) == is_global:
        raise CliError("give either --project NAME or --global")


@blacklist.command("add")
@click.argument("pattern")
@click.option("--project", "project_name")
@click.option("--global", "is_global", is_flag=True, help="Block in every project.")
@click.option("--direction", type=click.Choice(["inbound", "outbound"]), default="inbound", show_default=True)
@click.option("--reason", default="")
@json_option
@with_store
async def blacklist_add(store: SqliteStore, settings: Settings, *, pattern: str, project_name: str | None,
                        is_global: bool, direction: str, reason: str, as_json: bool) -> None:
    """Block a number or number block."""
    _scope(project_name, is_global)
    p = await ops.project(store, project_name) if project_name else None
    e = await ops.blacklist_add(store, project=p, pattern=pattern, direction=direction, reason=reason,
                                now_ms=SystemClock().now_ms())
    emit(as_json, {"pattern": e.pattern, "project": project_name, "direction": direction, "reason": reason},
         [f"blocked {e.pattern} ({direction}) in {project_name or 'all projects'}"])


@blacklist.command("remove")
@click.argument("pattern")
@click.option("--project", "project_name")
@click.option("--global", "is_global", is_flag=True)
@click.option("--direction", type=click.Choice(["inbound", "outbound"]), default="inbound", show_default=True)
@json_option
@with_store
async def blacklist_remove(store: SqliteStore, settings: Settings, *, pattern: str, project_name: str | None,
                           is_global: bool, direction: str, as_json: bool) -> None:
    """Unblock a number or number block."""
    _scope(project_name, is_global)
    p = await ops.project(store, project_name) if project_name else None
    await store.blacklist_remove(project_id=p.id if p else None, pattern=pattern, direction=direction)
    emit(as_json, {"removed": pattern}, [f"unblocked {pattern}"])


@blacklist.command("list")
@click.option("--project", "project_name")
@json_option
@with_store
async def blacklist_list(store: SqliteStore, settings: Settings, *, project_name: str | None,
                         as_json: bool) -> None:
    """List blocked numbers (a project's own and the global ones)."""
    p = await ops.project(store, project_name) if project_name else None
    names = {x.id: x.name for x in await store.projects()}
    rows = [{"pattern": e.pattern, "project": names.get(e.project_id) if e.project_id else None,
             "direction": e.direction, "reason": e.reason, "added_at": ts(e.created_ms)}
            for e in await store.blacklist(project_id=p.id if p else None)]
    emit(as_json, rows, [f"{r['pattern']:<18} {r['project'] or '(global)':<14} {r['direction']:<9} {r['reason']}"
                         for r in rows] or ["no blocked numbers"])


# --- demo and simulated calls ----------------------------------------------
@main.command()
@json_option
@with_store
async def demo(store: SqliteStore, settings: Settings, *, as_json: bool) -> None:
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


@main.command("call")
@click.option("--from", "caller", required=True, help="Caller ID as the network delivers it (or 'anonymous').")
@click.option("--to", "dialled", required=True, help="The access number dialled.")
@click.option("--digits", multiple=True, help="What the caller types at each PIN prompt, e.g. 12345678#.")
@click.option("--answer-after", type=float, default=2.0, show_default=True, help="Seconds the service rings.")
@click.option("--talk", type=float, default=30.0, show_default=True, help="Seconds the service talks.")
@click.option("--busy", is_flag=True, help="The service is busy.")
@click.option("--no-answer", is_flag=True, help="The service does not answer.")
@click.option("--hangup-after", type=float, help="The caller hangs up after this many seconds.")
@click.option("--host", default=None, help="Engine address (default: the serve settings).")
@click.option("--port", type=int, default=None)
@click.option("--realtime", is_flag=True, help="Wait as long as a real call would.")
@json_option
@click.pass_context
def call_command(ctx: click.Context, caller: str, dialled: str, digits: tuple[str, ...], answer_after: float,
                 talk: float, busy: bool, no_answer: bool, hangup_after: float | None, host: str | None,
                 port: int | None, realtime: bool, as_json: bool) -> None:
    """Play one simulated call against a running engine, through the fake Asterisk."""
    from agi.fake_asterisk import CallScript, DialScript, place_call

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
                        time_scale=1.0 if realtime else 0.0)

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
    lines = [*data["transcript"], "",
             f"prompts:   {', '.join(data['prompts_played']) or '-'}",
             f"digits:    {', '.join(data['digits_sent']) or '-'}",
             *[f"dial:      {d.get('dial_string')} -> {d.get('status')} (talk {d.get('talk_ms')} ms)"
               for d in data["dials"]],
             f"outcome:   {data['outcome']}", f"debited:   {data['debited_s']} s",
             f"remaining: {hms(data['remaining_s']) if data['remaining_s'] is not None else '-'}"]
    emit(as_json, data, lines)
