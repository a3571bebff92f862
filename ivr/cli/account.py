"""``ivr account show|statement|pay|limits``: the operator's account. Every card purchase
and recharge is a charge on it, every payment a credit; limits warn and lock."""

from __future__ import annotations

from typing import Any

import click

from rating.models import Payment
from rating.store.base import OperatorStore

from .. import operations as ops
from ..clock import SystemClock
from ..settings import Settings
from ._app import confirm, emit, json_option, main, note, open_new_file, os_user, with_store, yes_option
from ._format import amount, csv_text, hms, iso, local, money, parse_amount, table


@main.group()
def account() -> None:
    """The operator's account: charges, payments, info and lock limits."""


def state_dict(s: ops.AccountState) -> dict[str, Any]:
    """The stable JSON shape of the account's state."""
    return {"currency": s.currency, "owed_cents": s.owed_cents, "info_limit_cents": s.info_limit_cents,
            "lock_limit_cents": s.lock_limit_cents, "state": s.level.value, "suspend_calls": s.suspend_calls,
            "calls_suspended": s.calls_suspended}


_STATE_TEXT = {
    ops.AccountLevel.OK: "ok",
    ops.AccountLevel.INFO: "over the info limit: please pay",
    ops.AccountLevel.LOCKED: "locked: no new cards or recharges until a payment",
}


def state_lines(s: ops.AccountState) -> list[str]:
    owed = s.money(s.owed_cents) if s.owed_cents >= 0 else f"nothing ({s.money(-s.owed_cents)} paid in advance)"
    calls = ("new calls hear 'service suspended' while locked" if s.suspend_calls
             else "calls go on while locked")
    return [f"  owed:         {owed}",
            f"  state:        {_STATE_TEXT[s.level]}",
            f"  info limit:   {s.money(s.info_limit_cents)}",
            f"  lock limit:   {s.money(s.lock_limit_cents)}",
            f"  when locked:  {calls}" + (" (suspended now)" if s.calls_suspended else "")]


SHOWN_PAYMENTS = 5  # account show: the latest payments and corrections (the statement has them all)


def payment_dict(p: Payment) -> dict[str, Any]:
    """The stable JSON shape of a payment or a correction."""
    return {"payment": str(p.id), "at": iso(p.at_ms), "kind": "correction" if p.corrects else "payment",
            "amount_cents": p.amount_cents, "currency": p.currency, "corrects": _id(p.corrects),
            "corrected_cents": p.corrected_cents, "reference": p.reference, "by": p.entered_by or None}


def _id(entry_id: int | None) -> str | None:
    return None if entry_id is None else str(entry_id)


def _what(kind: str, entry_id: int | None) -> str:
    """How a statement line names itself; payments and corrections with the id a correction names."""
    names = {"purchase": "card bought", "recharge": "recharge", "payment": "payment", "correction": "correction"}
    return names[kind] + (f" #{entry_id}" if entry_id is not None else "")


def _reference(reference: str, corrects: int | None) -> str:
    """A correction's reference names the payment it corrects first."""
    if corrects is None:
        return reference
    return f"corrects #{corrects}" + (f": {reference}" if reference else "")


def payment_lines(payments: list[Payment]) -> list[str]:
    if not payments:
        return ["  payments:     none yet"]
    rows = []
    for p in payments:
        amount_ = money(-p.amount_cents if p.corrects is None else p.amount_cents, p.currency)
        state = ""
        if p.corrects is None and p.corrected_cents:
            state = "in full" if p.left_cents == 0 else money(p.corrected_cents, p.currency)
        rows.append([local(p.at_ms), _what("correction" if p.corrects else "payment", p.id), amount_,
                     _reference(p.reference, p.corrects) or "", p.entered_by or "", state])
    body = table(["DATE", "WHAT", "AMOUNT", "REFERENCE", "BY", "CORRECTED"], rows, right={2})
    return ["  latest payments (correct one: ivr account correct ID):", *("    " + line for line in body)]


@account.command("show")
@json_option
@with_store
async def account_show(store: OperatorStore, settings: Settings, *, as_json: bool) -> None:
    """What the account owes, its limits and state, and the latest payments."""
    s = await ops.account_state(store)
    payments = await store.payments(last=SHOWN_PAYMENTS)
    emit(as_json, {**state_dict(s), "payments": [payment_dict(p) for p in payments]},
         [f"account ({s.currency or 'no currency yet: create a project'})", *state_lines(s),
          *payment_lines(payments)])


def _line_dict(line: ops.StatementLine, names: dict[int, str]) -> dict[str, Any]:
    a = line.line
    return {"at": iso(a.at_ms), "kind": a.kind, "card": str(a.card_id) if a.card_id is not None else None,
            "project": names.get(a.project_id) if a.project_id is not None else None, "seconds": a.seconds,
            "amount_cents": a.amount_cents, "balance_cents": line.balance_cents, "reference": a.reference,
            "by": a.entered_by or None, "payment": _id(a.entry_id), "corrects": _id(a.corrects)}


@account.command("statement")
@click.option("--month", help="Only this month (YYYY-MM), with the balance it opened with.")
@click.option("--csv", "csv_path", metavar="FILE", help="Write the statement as CSV to this file ('-': stdout).")
@yes_option
@json_option
@with_store
async def account_statement(store: OperatorStore, settings: Settings, *, month: str | None, csv_path: str | None,
                            yes: bool, as_json: bool) -> None:
    """Every charge, payment and correction with the running amount owed."""
    since, until = ops.month_period_ms(month) if month else (None, None)
    st = await ops.statement(store, since_ms=since, until_ms=until)
    names = {p.id: p.name for p in await store.projects()}
    lines = [_line_dict(x, names) for x in st.lines]
    data = {"currency": st.currency, "month": month, "opening_cents": st.opening_cents,
            "closing_cents": st.closing_cents, "lines": lines}
    if csv_path:
        _statement_csv(csv_path, yes, data)
        if csv_path == "-":
            return
        note(f"statement written to {csv_path}")
    emit(as_json, data, _statement_lines(st, lines, month))


def _statement_csv(path: str, yes: bool, data: dict[str, Any]) -> None:
    text = csv_text(["at", "kind", "card", "project", "seconds", "amount", "balance", "currency", "reference",
                     "by", "payment", "corrects"],
                    [[x["at"], x["kind"], x["card"], x["project"], x["seconds"], amount(x["amount_cents"]),
                      amount(x["balance_cents"]), data["currency"], x["reference"], x["by"], x["payment"],
                      x["corrects"]]
                     for x in data["lines"]])
    if path == "-":
        click.echo(text, nl=False)
        return
    with open_new_file(path, yes) as out:
        out.write(text)


def _statement_lines(st: ops.Statement, lines: list[dict[str, Any]], month: str | None) -> list[str]:
    cur = st.currency
    rows = [[local(x.line.at_ms), _what(x.line.kind, x.line.entry_id), d["card"], d["project"],
             hms(x.line.seconds) if x.line.seconds else "", money(x.line.amount_cents, cur),
             money(x.balance_cents, cur), _reference(x.line.reference, x.line.corrects)]
            for x, d in zip(st.lines, lines, strict=True)]
    head = [f"account statement{' ' + month if month else ''} ({cur or 'no currency yet'})"]
    if month:
        head.append(f"  owed at the start: {money(st.opening_cents, cur)}")
    body = table(["DATE", "WHAT", "CARD", "PROJECT", "TIME", "AMOUNT", "OWED", "REFERENCE"], rows,
                 right={2, 4, 5, 6},
                 empty="no charges or payments")
    return [*head, *body, f"  owed at the end:   {money(st.closing_cents, cur)}"]


@account.command("pay", context_settings={"ignore_unknown_options": True})  # "-5": refused as an amount
@click.argument("amount_text", metavar="AMOUNT")
@click.option("--reference", default="", help="E.g. the bank transfer's reference.")
@click.option("--by", "entered_by", metavar="NAME", default=os_user, show_default="your user name",
              help="Who enters it, for the statement.")
@json_option
@with_store
async def account_pay(store: OperatorStore, settings: Settings, *, amount_text: str, reference: str,
                      entered_by: str, as_json: bool) -> None:
    """Record a payment (in the account's currency)."""
    cents = parse_amount(amount_text, option="AMOUNT")
    paid = await ops.pay(store, amount_cents=cents, reference=reference, by=entered_by,
                         now_ms=SystemClock().now_ms())
    s = paid.state
    emit(as_json, {**state_dict(s), "paid_cents": cents, "payment": str(paid.entry.id)},
         [f"payment #{paid.entry.id} of {s.money(cents)} recorded"
          f" (mistyped? ivr account correct {paid.entry.id})", *state_lines(s)])


@account.command("correct", context_settings={"ignore_unknown_options": True})  # "-5": refused as an amount
@click.argument("payment_text", metavar="PAYMENT")
@click.argument("amount_text", metavar="[AMOUNT]", required=False)
@click.option("--reference", default="", help="Why, e.g. 'typed 1,500 for 1500.00'.")
@click.option("--by", "entered_by", metavar="NAME", default=os_user, show_default="your user name",
              help="Who enters it, for the statement.")
@yes_option
@json_option
@with_store
async def account_correct(store: OperatorStore, settings: Settings, *, payment_text: str, amount_text: str | None,
                          reference: str, entered_by: str, yes: bool, as_json: bool) -> None:
    """Correct a payment entered wrong: take back AMOUNT of it (default: all that is left).
    The payment stays on the statement; the correction is a line of its own naming it
    (#PAYMENT, as the statement shows it). Enter the right amount as a new payment."""
    payment_id = ops.check_payment_id(payment_text)
    cents = parse_amount(amount_text, option="AMOUNT") if amount_text is not None else None
    payment = await store.payment(payment_id)
    taking = cents if cents is not None else payment.left_cents
    if payment.corrects is None and 0 < taking <= payment.left_cents:  # else refused below, without asking
        taken = money(taking, payment.currency)
        confirm(f"Take back {taken} of payment #{payment_id} ({money(payment.amount_cents, payment.currency)}"
                f" on {local(payment.at_ms)}{', ' + repr(payment.reference) if payment.reference else ''})?", yes)
    done = await ops.correct(store, payment_id=payment_id, amount_cents=cents, reference=reference,
                             by=entered_by, now_ms=SystemClock().now_ms())
    s, entry = done.state, done.entry
    emit(as_json, {**state_dict(s), "correction": payment_dict(entry)},
         [f"correction #{entry.id}: {s.money(entry.amount_cents)} of payment #{payment_id} taken back",
          *state_lines(s)])


@account.command("limits")
@click.option("--info", "info_text", help="Warn when the account owes more than this (default 150).")
@click.option("--lock", "lock_text", help="Lock purchases when it owes more than this (default 250).")
@click.option("--suspend-calls/--no-suspend-calls", default=None,
              help="While locked, new calls hear 'service suspended' (default: no).")
@json_option
@with_store
async def account_limits(store: OperatorStore, settings: Settings, *, info_text: str | None,
                         lock_text: str | None, suspend_calls: bool | None, as_json: bool) -> None:
    """Show or change the info and lock limits and whether a lock suspends calls."""
    s = await ops.set_limits(store, info_cents=parse_amount(info_text, option="--info") if info_text else None,
                             lock_cents=parse_amount(lock_text, option="--lock") if lock_text else None,
                             suspend_calls=suspend_calls)
    emit(as_json, state_dict(s), [f"account ({s.currency or 'no currency yet'})", *state_lines(s)])

