from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rating.billing import BillingRule, parse_money, price_cents, talk_seconds_from_ms

rules = st.builds(
    BillingRule,
    connect_s=st.integers(0, 120),
    minimum_s=st.integers(0, 300),
    initial_s=st.integers(1, 120),
    increment_s=st.integers(1, 60),
)


@given(rules, st.integers(0, 200_000))
def test_max_talk_is_the_largest_that_fits(rule: BillingRule, balance: int) -> None:
    t = rule.max_talk(balance)
    assert t >= 0
    assert rule.debit(t) <= balance
    assert balance < rule.debit(t + rule.increment_s)
    assert balance < rule.debit(t + 1)  # no talk second in between fits either


@given(rules, st.integers(0, 5_000), st.integers(0, 5_000))
def test_debit_is_monotonic_and_never_negative(rule: BillingRule, a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    assert 0 <= rule.debit(lo) <= rule.debit(hi)


@given(rules, st.integers(1, 5_000))
def test_debit_covers_the_talk_and_follows_the_blocks(rule: BillingRule, t: int) -> None:
    d = rule.debit(t)
    assert d >= t + rule.connect_s
    billed = d - rule.connect_s
    if billed > max(rule.minimum_s, rule.initial_s):
        assert (billed - rule.initial_s) % rule.increment_s == 0


def test_examples() -> None:
    per_second = BillingRule()
    assert per_second.debit(0) == 0
    assert per_second.debit(61) == 61
    assert per_second.max_talk(100) == 100
    sixty_ten = BillingRule(initial_s=60, increment_s=10)
    assert sixty_ten.debit(1) == 60
    assert sixty_ten.debit(61) == 70
    assert sixty_ten.max_talk(59) == 0
    assert sixty_ten.max_talk(75) == 70
    connect = BillingRule(connect_s=5, minimum_s=30)
    assert connect.debit(1) == 35
    assert connect.max_talk(34) == 0
    assert connect.max_talk(100) == 95


def test_bad_rules_are_refused() -> None:
    with pytest.raises(ValueError):
        BillingRule(increment_s=0)
    with pytest.raises(ValueError):
        BillingRule(connect_s=-1)


@given(st.integers(-10, 10_000_000), st.integers(0, 100_000))
def test_talk_seconds_never_exceed_the_limit(ms: int, limit: int) -> None:
    s = talk_seconds_from_ms(ms, limit)
    assert 0 <= s <= limit
    if 0 < ms and ms <= limit * 1000:
        assert (s - 1) * 1000 < ms <= s * 1000


def test_money() -> None:
    assert parse_money("0.50") == 50
    assert parse_money("12") == 1200
    assert parse_money("0.1") == 10
    for bad in ["-1", "abc", "0.505", "nan", "inf"]:
        with pytest.raises(ValueError):
            parse_money(bad)
    assert price_cents(600, 50) == 500
    assert price_cents(61, 60) == 61


def test_the_sqlite_store_keeps_both_store_contracts() -> None:
    from rating.store.base import CallStore, OperatorStore
    from rating.store.sqlite import SqliteStore

    store: CallStore = SqliteStore(":memory:")  # signatures: mypy (end of sqlite.py); names: here
    missing = [name for name in dir(OperatorStore) if not name.startswith("_") and not hasattr(store, name)]
    assert missing == []
    assert set(dir(CallStore)) <= set(dir(OperatorStore))
