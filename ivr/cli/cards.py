"""``ivr card …``: buy (one or a batch), quote, list, show, bind/unbind, recharge,
block/unblock, reset-pin, expire."""

from __future__ import annotations

import contextlib
import csv
import os
from typing import IO, Any

import click

from rating.errors import NotFound, RatingError
from rating.models import Binding, BindingEvent, Card, CardStatus, Cdr, LedgerEntry, Project
from rating.pins import load_or_create_secret
from rating.store.base import OperatorStore

from .. import operations as ops
from .._safe import csv_row
from ..clock import SystemClock
from ..settings import Settings
from ._app import CliError, confirm, emit, json_option, main, note, open_new_file, os_user, with_store, yes_option
from ._format import hms, iso, local, long_duration, money, national_display, table
from .cdrs import cdr_dict


@main.group()
def card() -> None:
    """Prepaid minute cards."""


def _now() -> int:
    return SystemClock().now_ms()


async def card_dict(store: OperatorStore, c: Card, p: Project, *, now_ms: int) -> dict[str, Any]:
    """The stable JSON shape of a card (``card show`` adds ``ledger`` and ``last_calls``)."""
    return {
        "card": str(c.id), "project": p.name, "note": c.note, "status": c.status(now_ms).value,
        "remaining_s": c.balance_s, "reserved_s": c.reserved_s, "in_calls": c.active_calls,
        "price_cents": c.price_cents, "currency": p.currency, "created_at": iso(c.created_ms),
        "activated_at": iso(c.activated_ms), "expires_at": iso(c.expires_ms),
        "bound_numbers": [{"number": b.caller, "national": ops.national_form(b.caller, p.region),
                           "bound_at": iso(b.bound_ms), "by": b.source} for b in await store.bindings(c.id)],
    }


async def _card_and_project(store: OperatorStore, card_id: str) -> tuple[Card, Project]:
    c = await ops.card(store, card_id)
    return c, await ops.card_project(store, c)


def _label(c: Card) -> str:
    return f"card {c.id}" + (f" ({c.note})" if c.note else "")


# --- buying ------------------------------------------------------------------
def quote_dict(q: ops.Quote) -> dict[str, Any]:
    return {"project": q.project, "minutes": q.minutes, "count": q.count, "price_cents": q.price_cents,
            "total_cents": q.total_cents, "currency": q.currency}


def quote_lines(q: ops.Quote) -> list[str]:
    each = f"{q.minutes} min in {q.project}: {money(q.price_cents, q.currency)}"
    if q.count == 1:
        return [each]
    return [f"{each} each, {q.count} cards: {money(q.total_cents, q.currency)}"]


@card.command("quote")
@click.option("--project", "project_name", required=True, help="The project the card is for.")
@click.option("--minutes", type=int, required=True, help="Talk time on the card.")
@click.option("--count", type=int, default=1, show_default=True, help="How many cards.")
@json_option
@with_store
async def card_quote(store: OperatorStore, settings: Settings, *, project_name: str, minutes: int, count: int,
                     as_json: bool) -> None:
    """Compute a card's price, changing nothing."""
    q = ops.quote(await ops.project(store, project_name), minutes, count)
    emit(as_json, quote_dict(q), quote_lines(q))


CSV_COLUMNS = ["card", "pin", "minutes", "price", "currency", "project", "note", "access_number",
               "access_number_national", "expires_at"]


def _csv_row(new: ops.NewCard, p: Project, minutes: int) -> list[object]:
    c = new.card
    first = p.numbers[0] if p.numbers else ""
    return [c.id, new.pin, minutes, money(c.price_cents, None), p.currency, p.name, c.note, first,
            national_display(first) if first else "", iso(c.expires_ms) or ""]


def _new_card_dict(new: ops.NewCard, p: Project, minutes: int) -> dict[str, Any]:
    c = new.card
    return {"card": str(c.id), "pin": new.pin, "project": p.name, "note": c.note, "minutes": minutes,
            "seconds": c.balance_s, "price_cents": c.price_cents, "currency": p.currency,
            "expires_at": iso(c.expires_ms)}


@card.command("create")
@click.option("--project", "project_name", required=True, help="The project the cards are for.")
@click.option("--minutes", type=int, required=True, help="Talk time on each card.")
@click.option("--note", default="", help="Free text to recognise the card, e.g. the holder.")
@click.option("--quote", "only_quote", is_flag=True, help="Only compute the price; change nothing.")
@click.option("--count", type=int, help="Buy a batch of this many cards (PINs go to --csv).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write card, PIN, minutes, price here.")
@yes_option
@json_option
@with_store
async def card_create(store: OperatorStore, settings: Settings, *, project_name: str, minutes: int, note: str,
                      only_quote: bool, count: int | None, csv_path: str | None, yes: bool,
                      as_json: bool) -> None:
    """Buy a card (charged to the account): prints its id and PIN, shown only now."""
    p = await ops.project(store, project_name)
    q = ops.quote(p, minutes, 1 if count is None else count)
    if only_quote:
        return emit(as_json, quote_dict(q), quote_lines(q))
    if count is not None and csv_path is None and not as_json:
        raise click.UsageError("--count writes the PINs to a file: add --csv FILE (or --json)")
    await ops.check_batch(store, p, minutes=minutes, count=q.count)  # before the PIN file is opened
    fig = await ops.guessing_figure(store, p, settings, now_ms=_now(), more_cards=q.count)
    if fig.too_short:
        click.echo(f"warning: with {fig.active_cards} active cards, {p.pin_length}-digit PINs fall to guessing in about"
             f" {long_duration(fig.expected_s or 0)} at the throttle's cap; a project with"
             f" {fig.safe_pin_length or 16}-digit PINs holds a year (see ivr project show {p.name})", err=True)
    secret = load_or_create_secret(settings.secret_path)
    out = open_new_file(csv_path, yes, private=True) if csv_path else None
    try:
        if count is None:
            await _buy_one(store, secret, p, minutes, note, out, as_json)
        else:
            await _buy_batch(store, secret, p, q, note, out, csv_path, as_json)
    finally:
        if out is not None:
            out.close()


async def _buy_one(store: OperatorStore, secret: bytes, p: Project, minutes: int, note_text: str,
                   out: IO[str] | None, as_json: bool) -> None:
    new = await ops.create_card(store, secret, project=p, minutes=minutes, note=note_text, now_ms=_now())
    if out is not None:
        writer = csv.writer(out)
        writer.writerows([CSV_COLUMNS, csv_row(_csv_row(new, p, minutes))])
    c = new.card
    emit(as_json, _new_card_dict(new, p, minutes),
         [f"card {c.id} bought for project {p.name}",
          f"  PIN:      {new.pin}   (shown once: write it down)",
          f"  time:     {minutes} min ({hms(c.balance_s)})",
          f"  price:    {money(c.price_cents, p.currency)} (charged to the account)",
          f"  note:     {c.note or '-'}",
          f"  expires:  {local(c.expires_ms) if c.expires_ms else 'never'}",
          f"  callers dial {', '.join(national_display(n) for n in p.numbers)}"])


async def _buy_batch(store: OperatorStore, secret: bytes, p: Project, q: ops.Quote, note_text: str,
                     out: IO[str] | None, csv_path: str | None, as_json: bool) -> None:
    def write_pins(cards: list[ops.NewCard]) -> None:
        """Before COMMIT: the cards exist only once their PINs are on disk."""
        assert out is not None
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(csv_row(_csv_row(new, p, q.minutes)) for new in cards)
        out.flush()
        os.fsync(out.fileno())

    try:
        bought = await ops.buy_cards(store, secret, project=p, minutes=q.minutes, note=note_text, count=q.count,
                                     now_ms=_now(), before_commit=write_pins if out is not None else None)
    except (RatingError, OSError) as exc:
        removed = ""
        if csv_path is not None:  # PINs of cards that do not exist: never leave them to be printed
            with contextlib.suppress(FileNotFoundError):
                os.unlink(csv_path)
            removed = f"; {csv_path} removed"
        if isinstance(exc, OSError):
            raise CliError(f"writing {csv_path}: {exc.strerror or exc} (nothing was bought{removed})") from exc
        raise type(exc)(f"{exc} (nothing was bought{removed})") from exc
    ids = [new.card.id for new in bought]
    data = {**quote_dict(q), "csv": csv_path, "cards": [_new_card_dict(n, p, q.minutes) for n in bought]}
    emit(as_json, data,
         [f"{q.count} cards bought for project {p.name}: cards {ids[0]}-{ids[-1]}, {q.minutes} min each",
          (f"  price: {money(q.price_cents, q.currency)} each, {money(q.total_cents, q.currency)} in all"
          " (charged to the account)"),
          f"  PINs:  {csv_path} (the only copy: print it, then keep it safe or delete it)"])


# --- looking at cards --------------------------------------------------------
@card.command("list")
@click.option("--project", "project_name", help="Only this project's cards.")
@click.option("--status", type=click.Choice([s.value for s in CardStatus]), help="Only cards in this state.")
@click.option("--search", help="Only cards whose note contains this text (any case).")
@click.option("--sort", type=click.Choice(ops.CARD_SORTS), default="created", show_default=True,
              help="created: oldest first; remaining: least time first; activated: latest last.")
@click.option("--reverse", is_flag=True, help="Reverse the order.")
@json_option
@with_store
async def card_list(store: OperatorStore, settings: Settings, *, project_name: str | None, status: str | None,
                    search: str | None, sort: str, reverse: bool, as_json: bool) -> None:
    """List cards with their remaining time (h:mm:ss)."""
    p = await ops.project(store, project_name) if project_name else None
    now = _now()
    cards = await ops.list_cards(store, project=p, status=CardStatus(status) if status else None,
                                 search=search, sort=sort, reverse=reverse, now_ms=now)
    projects = {x.id: x for x in await store.projects()}
    data = [await card_dict(store, c, projects[c.project_id], now_ms=now) for c in cards]
    rows = [[d["card"], d["project"], d["status"], hms(c.balance_s), len(d["bound_numbers"]),
             local(c.activated_ms), local(c.created_ms), d["note"]] for c, d in zip(cards, data, strict=True)]
    emit(as_json, data, table(["CARD", "PROJECT", "STATUS", "REMAINING", "NUMBERS", "ACTIVATED", "CREATED",
                               "NOTE"], rows, right={0, 3, 4}, empty="no cards"))


@card.command("show")
@click.argument("card_id")
@click.option("--calls", "last_calls", type=click.IntRange(0, 10_000), default=10, show_default=True,
              help="How many last calls.")
@json_option
@with_store
async def card_show(store: OperatorStore, settings: Settings, *, card_id: str, last_calls: int,
                    as_json: bool) -> None:
    """Remaining time, status, activation, bound numbers, ledger and last calls."""
    c, p = await _card_and_project(store, card_id)
    data = await card_dict(store, c, p, now_ms=_now())
    ledger = await store.ledger(c.id)
    calls = await store.find_cdrs(card_id=c.id, last=max(last_calls, 0))
    data["ledger"] = [{"at": iso(e.at_ms), "kind": e.kind, "seconds": e.seconds, "amount_cents": e.amount_cents,
                       "reference": e.reference} for e in ledger]
    data["last_calls"] = [cdr_dict(r, {p.id: p}) for r in calls]
    history = await store.binding_history(c.id)
    data["binding_history"] = [{"at": iso(e.at_ms), "number": e.caller, "action": e.action, "by": e.source,
                                "actor": e.actor} for e in history]
    emit(as_json, data, _show_lines(c, p, data["status"], await store.bindings(c.id), ledger, calls)
         + _history_lines(history))


_HOW = {"ivr": "by PIN", "operator": "by operator", "evicted": "dropped for a newer line",
        "moved": "moved to another card"}


def _history_lines(history: list[BindingEvent]) -> list[str]:
    return ["", "binding history:"] + _indent(table(
        ["AT", "NUMBER", "ACTION", "HOW", "WHO"],
        [[local(e.at_ms, seconds=True), e.caller, e.action, _HOW.get(e.source, e.source), e.actor]
         for e in history], empty="none"))


def _show_lines(c: Card, p: Project, status: str, bindings: list[Binding], ledger: list[LedgerEntry],
                calls: list[Cdr]) -> list[str]:
    in_calls = f" ({hms(c.reserved_s)} held by {c.active_calls} call(s) in progress)" if c.active_calls else ""
    lines = [f"card {c.id} in project {p.name}" + (f": {c.note}" if c.note else ""),
             f"  status:     {status}",
             f"  remaining:  {hms(c.balance_s)}{in_calls}",
             f"  price:      {money(c.price_cents, p.currency)}",
             f"  bought:     {local(c.created_ms)}",
             f"  activated:  {local(c.activated_ms) if c.activated_ms else 'not yet'}",
             f"  expires:    {local(c.expires_ms) if c.expires_ms else 'never'}", "", "bound numbers:"]
    lines += _indent(table(["NUMBER", "NATIONAL", "SINCE", "BY"],
                           [[b.caller, national_display(b.caller), local(b.bound_ms), b.source]
                            for b in bindings], empty="none (the first PIN call binds the caller)"))
    lines += ["", "ledger:"] + _indent(table(
        ["AT", "KIND", "TIME", "AMOUNT", "CALL"],
        [[local(e.at_ms, seconds=True), e.kind, _signed_hms(e.seconds),
          money(e.amount_cents, p.currency) if e.amount_cents else "", e.reference] for e in ledger],
        right={2, 3}))
    lines += ["", "last calls:"] + _indent(table(
        ["START", "CALLER", "OUTCOME", "TALK", "DEBITED"],
        [[local(r.start_ms, seconds=True), r.caller_e164 or r.caller_raw, r.outcome, hms(r.talk_s),
          hms(r.debited_s)] for r in calls], right={3, 4}, empty="none"))
    return lines


def _indent(lines: list[str]) -> list[str]:
    return ["  " + line for line in lines]


def _signed_hms(seconds: int) -> str:
    return ("+" if seconds > 0 else "") + hms(seconds)


# --- changing cards ----------------------------------------------------------
_BY_HELP = "Who does it, for the binding history."


@card.command("bind")
@click.argument("card_id")
@click.argument("number")
@click.option("--by", "actor", metavar="NAME", default=os_user, show_default="your user name", help=_BY_HELP)
@yes_option
@json_option
@with_store
async def card_bind(store: OperatorStore, settings: Settings, *, card_id: str, number: str, actor: str,
                    yes: bool, as_json: bool) -> None:
    """Bind a caller's number to the card by hand (no PIN call needed).

    NUMBER must be the caller ID the network really delivers for that line."""
    c, p = await _card_and_project(store, card_id)
    plan = await ops.plan_bind(store, card=c, number=number)
    effects = ([f"it is bound to card {plan.moved_from} now and moves to card {c.id}"] if plan.moved_from else []) \
        + ([f"card {c.id} keeps at most {p.max_bound_numbers} numbers: {', '.join(plan.dropped)} will be unbound"]
           if plan.dropped else [])
    if effects:
        confirm(f"Bind {plan.number} to card {c.id}? " + "; ".join(effects) + ".", yes)
    e164 = await ops.bind(store, card=c, number=number, now_ms=_now(), actor=actor)
    emit(as_json, {"card": str(c.id), "number": e164, "national": ops.national_form(e164, p.region),
                   "by": "operator", "actor": actor, "moved_from": str(plan.moved_from) if plan.moved_from else None,
                   "unbound": plan.dropped},
         [f"{e164} ({national_display(e164)}) bound to card {c.id} by {actor}"])
    note("note: this must be the caller ID the network really delivers for that line;"
         " a number typed differently never matches")


@card.command("unbind")
@click.argument("card_id")
@click.argument("number")
@click.option("--by", "actor", metavar="NAME", default=os_user, show_default="your user name", help=_BY_HELP)
@yes_option
@json_option
@with_store
async def card_unbind(store: OperatorStore, settings: Settings, *, card_id: str, number: str, actor: str,
                      yes: bool, as_json: bool) -> None:
    """Remove a bound number: its next call asks for a PIN again."""
    c, p = await _card_and_project(store, card_id)
    e164 = ops.normalise(number, p.region)
    if e164 not in [b.caller for b in await store.bindings(c.id)]:
        raise NotFound(f"{e164} is not bound to card {c.id}")
    confirm(f"Unbind {e164} from {_label(c)}? Its next call asks for a PIN.", yes)
    await ops.unbind(store, card=c, number=number, actor=actor, now_ms=_now())
    emit(as_json, {"card": str(c.id), "number": e164, "unbound": True, "actor": actor},
         [f"{e164} unbound from card {c.id} by {actor}"])


@card.command("recharge")
@click.argument("card_id")
@click.option("--minutes", type=int, required=True, help="Talk time to add.")
@json_option
@with_store
async def card_recharge(store: OperatorStore, settings: Settings, *, card_id: str, minutes: int,
                        as_json: bool) -> None:
    """Add minutes to a card (priced like a purchase, charged to the account)."""
    c = await ops.card(store, card_id)
    r = await ops.recharge(store, card=c, minutes=minutes, now_ms=_now())
    emit(as_json, {"card": str(c.id), "added_s": r.seconds, "remaining_s": r.card.balance_s,
                   "price_cents": r.price_cents, "currency": r.currency},
         [(f"card {c.id}: +{minutes} min, now {hms(r.card.balance_s)} left;"
          f" {money(r.price_cents, r.currency)} charged to the account")])
    if r.card.blocked:
        note(f"note: card {c.id} is blocked; unblock it to use the time (ivr card unblock {c.id})")


@card.command("block")
@click.argument("card_id")
@click.option("--hangup", is_flag=True, help="Also end the card's calls in progress (needs AMI).")
@yes_option
@json_option
@with_store
async def card_block(store: OperatorStore, settings: Settings, *, card_id: str, hangup: bool, yes: bool,
                     as_json: bool) -> None:
    """Block a card: its callers hear that it is blocked (--hangup: also those in a call now)."""
    c = await ops.card(store, card_id)
    if not hangup:
        if not c.blocked:
            confirm(f"Block {_label(c)}? Its callers will hear that it is blocked.", yes)
            await store.set_blocked(c.id, True)
        if c.active_calls:
            note(f"note: card {c.id} is in {c.active_calls} call(s) now; they go on until they end"
                 " (--hangup ends them)")
        emit(as_json, {"card": str(c.id), "blocked": True, "in_calls": c.active_calls, "hung_up": []},
             [f"card {c.id} {'was already' if c.blocked else 'is now'} blocked"])
        return
    from ..live import end_card_calls
    from .calls import cli_ami

    async with cli_ami(settings, "--hangup") as ami:   # refused before anything changes
        if not c.blocked:
            confirm(f"Block {_label(c)} and end its calls in progress? Its callers will hear that it is"
                    " blocked.", yes)
            await store.set_blocked(c.id, True)
        ended = await end_card_calls(ami, store, c.id)
    emit(as_json, {"card": str(c.id), "blocked": True, "in_calls": c.active_calls,
                   "hung_up": [call.uniqueid for call in ended]},
         [f"card {c.id} {'was already' if c.blocked else 'is now'} blocked;"
          f" {len(ended)} call(s) in progress ended" + (f": {', '.join(x.uniqueid for x in ended)}" if ended else "")])


@card.command("unblock")
@click.argument("card_id")
@json_option
@with_store
async def card_unblock(store: OperatorStore, settings: Settings, *, card_id: str, as_json: bool) -> None:
    """Unblock a card."""
    c = await ops.card(store, card_id)
    if c.blocked:
        await store.set_blocked(c.id, False)
    emit(as_json, {"card": str(c.id), "blocked": False, "in_calls": c.active_calls},
         [f"card {c.id} unblocked" if c.blocked else f"card {c.id} was not blocked"])


@card.command("reset-pin")
@click.argument("card_id")
@yes_option
@json_option
@with_store
async def card_reset_pin(store: OperatorStore, settings: Settings, *, card_id: str, yes: bool,
                         as_json: bool) -> None:
    """Give the card a new PIN (shown once); the old one stops working, bound numbers stay."""
    c = await ops.card(store, card_id)
    confirm(f"Give {_label(c)} a new PIN? The old PIN stops working at once.", yes)
    pin = await ops.reset_pin(store, load_or_create_secret(settings.secret_path), card=c)
    emit(as_json, {"card": str(c.id), "pin": pin},
         [f"card {c.id}: new PIN {pin}   (shown once: write it down)"])


@card.command("expire")
@click.argument("card_id")
@click.option("--on", "on_date", help="Last day the card works (YYYY-MM-DD or DD.MM.YYYY).")
@click.option("--never", is_flag=True, help="The card never expires.")
@yes_option
@json_option
@with_store
async def card_expire(store: OperatorStore, settings: Settings, *, card_id: str, on_date: str | None,
                      never: bool, yes: bool, as_json: bool) -> None:
    """Set the card's last day (it expires at midnight after it), or --never."""
    if (on_date is None) == (not never):
        raise click.UsageError("give either --on DATE or --never")
    c = await ops.card(store, card_id)
    expires_ms = None
    if on_date is not None:
        day = ops.parse_date(on_date)
        expires_ms = ops.period_ms(None, day)[1]
    ops.check_expiry(expires_ms, _now(), on_date or "")  # before asking
    question = f"{_label(c)} works until the end of {on_date}." if on_date else f"{_label(c)} never expires."
    confirm(f"{question} Change it?", yes)
    updated = await ops.set_expiry(store, card=c, expires_ms=expires_ms, now_ms=_now(), label=on_date or "")
    emit(as_json, {"card": str(c.id), "expires_at": iso(updated.expires_ms)},
         [f"card {c.id} works until the end of {on_date} (expires {local(updated.expires_ms)})"
          if updated.expires_ms else f"card {c.id} never expires"])

