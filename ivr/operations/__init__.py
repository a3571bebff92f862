"""What operators do, in one place for the CLI, the demo and the engine: projects,
cards, blocked numbers, CDR reports and the operator's account.

Every function validates its input and raises ``rating.errors`` with a message
for the operator; nothing is changed when one is raised. Times are integer
milliseconds since the epoch, money integer cents, card time integer seconds.

The account's policy adds two refusals to the rating errors::

    RatingError                      (rating.errors)
     ├── InvalidInput
     │    └── CurrencyMismatch       a project or a report in another currency than the account
     └── AccountLocked               owing more than the lock limit: no purchases, no recharges

The operator's account (one per database: the operator running this engine) is
charged every card purchase and recharge — the ledger's priced rows — and
credited every payment. Owing more than the info limit makes every CLI command
warn; owing more than the lock limit refuses purchases and recharges and, when
the operator chose so, suspends new calls (``calls_suspended``).
"""

from __future__ import annotations

from ._common import (
    CARD_SORTS,
    DIRECTIONS,
    LANGUAGES,
    MAX_BATCH,
    MAX_MINUTES,
    MAX_NOTE,
    REPORT_BY,
    AccountLocked,
    CurrencyMismatch,
)
from .account import (
    AccountLevel,
    AccountState,
    Statement,
    StatementLine,
    account_state,
    calls_suspended,
    ensure_purchases_allowed,
    pay,
    set_limits,
    statement,
)
from .blacklist import (
    BLACKLIST_CSV_COLUMNS,
    BlockedRow,
    ImportResult,
    blacklist_add,
    blacklist_remove,
    blocked_entry,
    blocked_list,
    check_direction,
    check_pattern,
    import_blacklist,
    parse_blacklist_csv,
)
from .cards import (
    BindPlan,
    NewCard,
    Quote,
    Recharge,
    bind,
    buy_cards,
    card,
    card_project,
    check_card_status,
    check_count,
    check_expiry,
    check_minutes,
    check_note,
    create_card,
    list_cards,
    plan_bind,
    quote,
    recharge,
    reset_pin,
    set_expiry,
    unbind,
)
from .cdrs import (
    CdrFilter,
    Report,
    ReportRow,
    check_outcome,
    day_start_ms,
    find_cdrs,
    month_of,
    month_period_ms,
    parse_date,
    period_ms,
    report,
)
from .projects import (
    billing_rule,
    check_project_values,
    create_project,
    national_form,
    normalise,
    project,
    update_project,
)
from .routes import (
    add_route,
    check_routing_values,
    move_route,
    outbound_blocks,
    parse_countries,
    parse_kinds,
    remove_route,
    set_zones,
    zone_rows,
)

__all__ = [
    "add_route",
    "check_routing_values",
    "move_route",
    "outbound_blocks",
    "parse_countries",
    "parse_kinds",
    "remove_route",
    "set_zones",
    "zone_rows",
    "AccountLevel",
    "AccountLocked",
    "AccountState",
    "BLACKLIST_CSV_COLUMNS",
    "BindPlan",
    "BlockedRow",
    "CARD_SORTS",
    "CdrFilter",
    "CurrencyMismatch",
    "DIRECTIONS",
    "ImportResult",
    "LANGUAGES",
    "MAX_BATCH",
    "MAX_MINUTES",
    "MAX_NOTE",
    "NewCard",
    "Quote",
    "REPORT_BY",
    "Recharge",
    "Report",
    "ReportRow",
    "Statement",
    "StatementLine",
    "account_state",
    "billing_rule",
    "bind",
    "blacklist_add",
    "blacklist_remove",
    "blocked_entry",
    "blocked_list",
    "buy_cards",
    "calls_suspended",
    "card",
    "card_project",
    "check_card_status",
    "check_count",
    "check_direction",
    "check_expiry",
    "check_minutes",
    "check_note",
    "check_outcome",
    "check_pattern",
    "check_project_values",
    "create_card",
    "create_project",
    "day_start_ms",
    "ensure_purchases_allowed",
    "find_cdrs",
    "import_blacklist",
    "list_cards",
    "month_of",
    "month_period_ms",
    "national_form",
    "normalise",
    "parse_blacklist_csv",
    "parse_date",
    "pay",
    "period_ms",
    "plan_bind",
    "project",
    "quote",
    "recharge",
    "report",
    "reset_pin",
    "set_expiry",
    "set_limits",
    "statement",
    "unbind",
    "update_project",
]
