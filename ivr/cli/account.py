"""``ivr account show|statement|pay|limits``: the operator's account. Every card purchase
and recharge is a charge on it, every payment a credit; limits warn and lock."""

from __future__ import annotations

from typing import Any

import click

from rating.store.base import OperatorStore

from .. import operations as ops
from ..clock import SystemClock
from ..settings import Settings
from ._app import emit, json_option, main, note, open_new_file, os_user, with_store, yes_option
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


@account.command("show")
@json_option
@with_store
async def account_show(store: OperatorStore, settings: Settings, *, as_json: bool) -> None:
    """What the account owes, its limits and state."""
    s = await ops.account_state(store)
    emit(as_json, state_dict(s), [f"account ({s.currency or 'no currency yet: create a project'})",
                                  *state_lines(s)])


def _line_dict(line: ops.StatementLine, names: dict[int, str]) -> dict[str, Any]:
    a = line.line
    return {"at": iso(a.at_ms), "kind": a.kind, "card": str(a.card_id) if a.card_id is not None else None,
            "project": names.get(a.project_id) if a.project_id is not None else None, "seconds": a.seconds,
            "amount_cents": a.amount_cents, "balance_cents": line.balance_cents, "reference": a.reference,
            "by": a.entered_by or None}


@account.command("statement")
@click.option("--month", help="Only this month (YYYY-MM), with the balance it opened with.")
@click.option("--csv", "csv_path", metavar="FILE", help="Write the statement as CSV to this file ('-': stdout).")
@yes_option
@json_option
@with_store
async def account_statement(store: OperatorStore, settings: Settings, *, month: str | None, csv_path: str | None,
                            yes: bool, as_json: bool) -> None:
    """Every charge and payment with the running amount owed."""
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
                     "by"],
                    [[x["at"], x["kind"], x["card"], x["project"], x["seconds"], amount(x["amount_cents"]),
                      amount(x["balance_cents"]), data["currency"], x["reference"], x["by"]]
                     for x in data["lines"]])
    if path == "-":
        click.echo(text, nl=False)
        return
    with open_new_file(path, yes) as out:
        out.write(text)


def _statement_lines(st: ops.Statement, lines: list[dict[str, Any]], month: str | None) -> list[str]:
    cur = st.currency
    what = {"purchase": "card bought", "recharge": "recharge", "payment": "payment"}
    rows = [[local(x.line.at_ms), what[x.line.kind], d["card"], d["project"],
             hms(x.line.seconds) if x.line.seconds else "", money(x.line.amount_cents, cur),
             money(x.balance_cents, cur), d["reference"] or ""] for x, d in zip(st.lines, lines, strict=True)]
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
    s = await ops.pay(store, amount_cents=cents, reference=reference, by=entered_by,
                      now_ms=SystemClock().now_ms())
    emit(as_json, {**state_dict(s), "paid_cents": cents},
         [f"payment of {s.money(cents)} recorded", *state_lines(s)])


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

