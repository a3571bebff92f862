"""Versioned migrations, applied in order, the same versions for every backend.

SQLite records the last one in ``PRAGMA user_version``, PostgreSQL in the table
``ivr_schema``. The list is append-only: a migration on main is never edited.
Written in SQLite's dialect; ``postgres.py`` translates each (BIGINT for the
``INTEGER`` columns: times in ms do not fit 32 bits) unless ``POSTGRES_OVERRIDES``
gives it by hand.

What is automatic (``check_schema``): an empty database gets the whole schema when
it is first opened — SQLite's zero setup (``make run``), and a new PostgreSQL
database. An older schema is migrated only by ``ivr db migrate`` (back up first; with
several engines, each refuses to start on a schema it does not know), a newer one
is refused: ``SchemaMismatch`` in one line either way.
"""

from __future__ import annotations

from typing import Literal

from ..errors import SchemaMismatch

# check: refuse an older or newer schema (engines, the CLI); migrate: upgrade an older
# one (ivr db migrate); inspect: change nothing, refuse nothing (ivr db status).
SchemaMode = Literal["check", "migrate", "inspect"]


def check_schema(found: int, known: int, mode: SchemaMode) -> range:
    """The migrations (1-based numbers) to apply to a schema at version ``found``.

    Raises:
        SchemaMismatch: newer than ``known``, or older and ``mode`` is "check".
    """
    if mode == "inspect":
        return range(0)
    if found > known:
        raise SchemaMismatch(f"the database schema is version {found}, newer than this ivr knows ({known}):"
                             " upgrade ivr")
    if 0 < found < known and mode == "check":
        raise SchemaMismatch(f"the database schema is version {found}, this ivr needs {known}:"
                             " run 'ivr db migrate' (back the database up first)")
    return range(found + 1, known + 1)


MIGRATIONS: list[str] = [
    # 1: the core engine
    """
    CREATE TABLE projects (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        service TEXT NOT NULL,
        fallback TEXT,
        ring_timeout_s INTEGER NOT NULL CHECK (ring_timeout_s > 0),
        language TEXT NOT NULL,
        region TEXT NOT NULL,
        price_per_minute_cents INTEGER NOT NULL CHECK (price_per_minute_cents >= 0),
        currency TEXT NOT NULL,
        connect_s INTEGER NOT NULL DEFAULT 0,
        minimum_s INTEGER NOT NULL DEFAULT 0,
        initial_s INTEGER NOT NULL DEFAULT 1,
        increment_s INTEGER NOT NULL DEFAULT 1,
        warning_s INTEGER NOT NULL DEFAULT 60,
        pin_length INTEGER NOT NULL DEFAULT 8,
        max_bound_numbers INTEGER NOT NULL DEFAULT 3,
        max_simultaneous_calls INTEGER NOT NULL DEFAULT 1,
        card_validity_days INTEGER,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE access_numbers (
        number TEXT PRIMARY KEY,               -- E.164
        project_id INTEGER NOT NULL REFERENCES projects(id)
    );
    CREATE TABLE cards (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects(id),
        note TEXT NOT NULL,
        pin_hash TEXT NOT NULL,
        blocked INTEGER NOT NULL DEFAULT 0,
        balance_s INTEGER NOT NULL CHECK (balance_s >= 0),
        reserved_s INTEGER NOT NULL DEFAULT 0 CHECK (reserved_s >= 0 AND reserved_s <= balance_s),
        active_calls INTEGER NOT NULL DEFAULT 0 CHECK (active_calls >= 0),
        price_cents INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        activated_ms INTEGER,
        expires_ms INTEGER,
        UNIQUE (project_id, pin_hash)
    );
    CREATE TABLE bindings (
        project_id INTEGER NOT NULL REFERENCES projects(id),
        caller TEXT NOT NULL,                  -- E.164
        card_id INTEGER NOT NULL REFERENCES cards(id),
        bound_ms INTEGER NOT NULL,
        source TEXT NOT NULL,
        PRIMARY KEY (project_id, caller)
    );
    CREATE INDEX bindings_card ON bindings(card_id);
    CREATE TABLE ledger (
        id INTEGER PRIMARY KEY,
        card_id INTEGER NOT NULL REFERENCES cards(id),
        at_ms INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('purchase','recharge','debit','adjustment')),
        seconds INTEGER NOT NULL,
        amount_cents INTEGER NOT NULL DEFAULT 0,
        reference TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX ledger_card ON ledger(card_id);
    CREATE TABLE reservations (
        id INTEGER PRIMARY KEY,
        card_id INTEGER NOT NULL REFERENCES cards(id),
        uniqueid TEXT NOT NULL,
        seconds INTEGER NOT NULL CHECK (seconds >= 0),
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open','settled','released'))
    );
    CREATE INDEX reservations_open ON reservations(card_id) WHERE state = 'open';
    CREATE TABLE cdrs (
        id INTEGER PRIMARY KEY,
        uniqueid TEXT NOT NULL,
        project_id INTEGER,
        card_id INTEGER,
        caller_raw TEXT NOT NULL,
        caller_e164 TEXT,
        dialled TEXT NOT NULL,
        destination TEXT,
        start_ms INTEGER NOT NULL,
        answer_ms INTEGER,
        end_ms INTEGER NOT NULL,
        talk_s INTEGER NOT NULL,
        debited_s INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        hangup_side TEXT NOT NULL
    );
    CREATE INDEX cdrs_start ON cdrs(start_ms);
    CREATE INDEX cdrs_card ON cdrs(card_id);
    CREATE TABLE blacklist (
        id INTEGER PRIMARY KEY,
        project_id INTEGER REFERENCES projects(id),
        pattern TEXT NOT NULL,
        direction TEXT NOT NULL CHECK (direction IN ('inbound','outbound')),
        reason TEXT NOT NULL DEFAULT '',
        created_ms INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX blacklist_unique ON blacklist(IFNULL(project_id, 0), pattern, direction);
    CREATE TABLE pin_failures (
        project_id INTEGER NOT NULL,
        caller_key TEXT NOT NULL,
        at_ms INTEGER NOT NULL
    );
    CREATE INDEX pin_failures_key ON pin_failures(project_id, caller_key, at_ms);
    """,
    # 2: the operator's CLI — who blocked a number, the operator's account (its
    # charges are the ledger's purchase and recharge rows; payments are their own
    # table), indexes for CDR reports and account statements.
    """
    ALTER TABLE blacklist ADD COLUMN added_by TEXT NOT NULL DEFAULT '';
    CREATE TABLE account (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        currency TEXT,
        info_limit_cents INTEGER NOT NULL DEFAULT 15000 CHECK (info_limit_cents >= 0),
        lock_limit_cents INTEGER NOT NULL DEFAULT 25000 CHECK (lock_limit_cents >= 0),
        suspend_calls INTEGER NOT NULL DEFAULT 0 CHECK (suspend_calls IN (0, 1))
    );
    INSERT INTO account (id, currency) VALUES (1, (SELECT currency FROM projects ORDER BY id LIMIT 1));
    CREATE TABLE payments (
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
        currency TEXT NOT NULL,
        reference TEXT NOT NULL DEFAULT '',
        entered_by TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX ledger_charges ON ledger(at_ms) WHERE kind IN ('purchase', 'recharge');
    CREATE INDEX cdrs_project_start ON cdrs(project_id, start_ms);
    """,
    # 3: the PIN throttle counts a whole project's failures too
    """
    CREATE INDEX pin_failures_project ON pin_failures(project_id, at_ms);
    """,
    # 4: call routing (issue 11) — forwarding rules in order, each with conditions and
    # optional office hours; the project's time zone ('' = its region's), trunk template,
    # destination policy, zone factors (per-mille, "national=1200,eu=1300") and monthly
    # quota; the quota each card used per month; how each CDR was routed and rated. The
    # existing service and fallback become rules 1 and 2 (fallback on busy or no answer,
    # as the engine did). Old CDRs get the type the old engine would have given them.
    """
    ALTER TABLE projects ADD COLUMN timezone TEXT NOT NULL DEFAULT '';
    ALTER TABLE projects ADD COLUMN trunk TEXT NOT NULL DEFAULT '';
    ALTER TABLE projects ADD COLUMN allow_countries TEXT NOT NULL DEFAULT 'DE,AT,CH,FR,PL';
    ALTER TABLE projects ADD COLUMN block_types TEXT NOT NULL DEFAULT 'premium_rate,shared_cost,personal,uan,satellite';
    ALTER TABLE projects ADD COLUMN zone_factors TEXT NOT NULL DEFAULT '';
    ALTER TABLE projects ADD COLUMN quota_s INTEGER NOT NULL DEFAULT 0 CHECK (quota_s >= 0);
    CREATE TABLE routes (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects(id),
        position INTEGER NOT NULL CHECK (position > 0),
        destination TEXT NOT NULL,
        conditions TEXT NOT NULL,
        hours TEXT NOT NULL DEFAULT '',
        closed_on TEXT NOT NULL DEFAULT '',
        ring_timeout_s INTEGER CHECK (ring_timeout_s IS NULL OR ring_timeout_s > 0)
    );
    CREATE INDEX routes_project ON routes(project_id, position);
    INSERT INTO routes (project_id, position, destination, conditions)
        SELECT id, 1, service, 'always' FROM projects;
    INSERT INTO routes (project_id, position, destination, conditions)
        SELECT id, 2, fallback, 'busy,noanswer' FROM projects WHERE fallback IS NOT NULL;
    CREATE TABLE card_quota (
        card_id INTEGER NOT NULL REFERENCES cards(id),
        month TEXT NOT NULL,
        used_s INTEGER NOT NULL CHECK (used_s >= 0),
        PRIMARY KEY (card_id, month)
    );
    ALTER TABLE cdrs ADD COLUMN call_type TEXT NOT NULL DEFAULT '';
    ALTER TABLE cdrs ADD COLUMN route_position INTEGER;
    ALTER TABLE cdrs ADD COLUMN leg INTEGER;
    ALTER TABLE cdrs ADD COLUMN zone TEXT NOT NULL DEFAULT '';
    ALTER TABLE cdrs ADD COLUMN number_type TEXT NOT NULL DEFAULT '';
    ALTER TABLE cdrs ADD COLUMN factor_pm INTEGER NOT NULL DEFAULT 1000;
    ALTER TABLE cdrs ADD COLUMN quota_used_s INTEGER NOT NULL DEFAULT 0;
    UPDATE cdrs SET call_type = CASE
        WHEN outcome IN ('BLOCKED_CALLER', 'BLOCKED_DESTINATION') THEN 'blocked'
        WHEN destination IS NULL THEN 'refused'
        WHEN destination = (SELECT fallback FROM projects p WHERE p.id = cdrs.project_id) THEN 'fallback'
        ELSE 'service' END,
        zone = CASE WHEN destination IS NULL THEN '' ELSE 'internal' END,
        number_type = CASE WHEN destination IS NULL THEN '' ELSE 'dial_string' END;
    CREATE INDEX cdrs_type ON cdrs(call_type, start_ms);
    """,
    # 5: any engine can settle any call (issue 8): a hold keeps what its settlement
    # needs when the engine that made it is gone — the talk limit and billing rule it
    # was granted with, and the call's facts for the CDR the settle route writes.
    """
    ALTER TABLE reservations ADD COLUMN max_talk_s INTEGER;
    ALTER TABLE reservations ADD COLUMN connect_s INTEGER;
    ALTER TABLE reservations ADD COLUMN minimum_s INTEGER;
    ALTER TABLE reservations ADD COLUMN initial_s INTEGER;
    ALTER TABLE reservations ADD COLUMN increment_s INTEGER;
    ALTER TABLE reservations ADD COLUMN caller_raw TEXT;
    ALTER TABLE reservations ADD COLUMN caller_e164 TEXT;
    ALTER TABLE reservations ADD COLUMN dialled TEXT;
    ALTER TABLE reservations ADD COLUMN call_start_ms INTEGER;
    """,
    # 6: security (issue 9) — a PIN attempt is recorded before its prompt (pending until
    # the answer: an empty entry is deleted, a wrong one kept), the project chooses whether a
    # binding above the card's limit evicts the oldest line, and every bind / unbind is kept.
    """
    ALTER TABLE pin_failures ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX pin_failures_pending ON pin_failures(project_id, at_ms) WHERE pending = 1;
    ALTER TABLE projects ADD COLUMN evict_oldest_binding INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE binding_history (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL,
        card_id INTEGER NOT NULL,
        caller TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('bind', 'unbind', 'refused')),
        source TEXT NOT NULL,
        actor TEXT NOT NULL DEFAULT '',
        at_ms INTEGER NOT NULL
    );
    CREATE INDEX binding_history_card ON binding_history(card_id, at_ms);
    """,
    # 7: several Asterisk boxes on one database (issue 10): a hold keeps the address of
    # the Asterisk its call came from, so an engine's reconciliation judges only the
    # holds of the Asterisk its AMI watches (NULL: a hold from before, judged as before).
    """
    ALTER TABLE reservations ADD COLUMN asterisk TEXT;
    """,
    # 8: money (issue 12) — each CDR keeps the price per minute and the currency it was
    # rated at, so a later price change never rewrites past revenue. CDRs from before
    # get their project's price at migration time: the best there is (the price of the
    # day of the call was never kept). A payment can be corrected: a correction is a
    # payments row naming the payment it reverses (``corrects``); its amount is positive
    # (the CHECK stays) and is subtracted from what was paid.
    """
    ALTER TABLE cdrs ADD COLUMN price_per_minute_cents INTEGER;
    ALTER TABLE cdrs ADD COLUMN currency TEXT;
    UPDATE cdrs SET
        price_per_minute_cents = (SELECT p.price_per_minute_cents FROM projects p WHERE p.id = cdrs.project_id),
        currency = (SELECT p.currency FROM projects p WHERE p.id = cdrs.project_id);
    ALTER TABLE payments ADD COLUMN corrects INTEGER REFERENCES payments(id);
    CREATE INDEX payments_corrects ON payments(corrects) WHERE corrects IS NOT NULL;
    """,
    # 9: a bound line whose card is used up or expired (issue 12): the call ends after the
    # reason (0, the default), or the caller may type another card's PIN (1).
    """
    ALTER TABLE projects ADD COLUMN new_pin_when_used_up INTEGER NOT NULL DEFAULT 0;
    """,
]
