"""Zone factors and the included quota: property tests of the pure arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rating.billing import BillingRule
from rating.errors import InvalidInput
from rating.zones import FACTOR_UNIT, Zone, ZoneTariff, budget_base, charge, classify, max_talk, month_of, parse_factor

rules = st.builds(BillingRule, connect_s=st.integers(0, 60), minimum_s=st.integers(0, 120),
                  initial_s=st.integers(1, 60), increment_s=st.integers(1, 60))
factors = st.integers(1, 5_000)
quotas = st.integers(0, 3_600)


@given(rules, st.integers(0, 100_000), factors, quotas)
def test_the_hold_under_a_factor_fits_the_budget_and_is_the_largest(
        rule: BillingRule, budget: int, factor: int, quota: int) -> None:
    t = max_talk(rule, budget, factor, quota)
    assert t >= 0
    assert charge(rule.debit(t), factor, quota)[0] <= budget
    assert charge(rule.debit(t + 1), factor, quota)[0] > budget   # one more second does not fit


@given(rules, st.integers(0, 50_000), st.integers(0, 50_000), factors, quotas)
def test_the_hold_never_shrinks_with_more_budget(rule: BillingRule, a: int, b: int, factor: int, quota: int) -> None:
    lo, hi = sorted((a, b))
    assert max_talk(rule, lo, factor, quota) <= max_talk(rule, hi, factor, quota)


@given(rules, st.integers(0, 50_000), factors, factors, quotas)
def test_a_higher_factor_never_gives_more_talk(rule: BillingRule, budget: int, f1: int, f2: int, quota: int) -> None:
    lo, hi = sorted((f1, f2))
    assert max_talk(rule, budget, hi, quota) <= max_talk(rule, budget, lo, quota)


@given(st.integers(0, 50_000), st.integers(0, 50_000), factors, quotas)
def test_charge_is_monotonic_and_covers_the_base_at_or_above_the_unit(a: int, b: int, factor: int, quota: int) -> None:
    lo, hi = sorted((a, b))
    assert 0 <= charge(lo, factor, quota)[0] <= charge(hi, factor, quota)[0]
    debit, used = charge(hi, factor, quota)
    assert used == min(hi, quota)
    if factor >= FACTOR_UNIT:
        assert debit >= hi
    assert charge(hi, FACTOR_UNIT, quota) == (hi, min(hi, quota))   # 1000 changes nothing


@given(st.integers(0, 50_000), factors, quotas)
def test_budget_base_is_exact(budget: int, factor: int, quota: int) -> None:
    base = budget_base(budget, factor, quota)
    assert charge(base, factor, quota)[0] <= budget
    assert charge(base + 1, factor, quota)[0] > budget


@given(st.lists(st.integers(0, 2_000), max_size=20), factors, quotas)
def test_the_quota_is_never_used_twice(bases: list[int], factor: int, quota: int) -> None:
    """Calls of one card in one month, each given what the earlier ones left."""
    used_total = 0
    for base in bases:
        debit, used = charge(base, factor, quota - used_total)
        assert 0 <= used <= base
        used_total += used
        assert debit >= used
    assert used_total <= quota
    assert used_total == min(quota, sum(bases))


def test_the_seed_factors() -> None:
    # "um den Faktor 0,2 für Telefonate innerhalb Deutschlands und um den Faktor 0,3 … innerhalb der EU"
    assert parse_factor("1200") == parse_factor("1.2") == parse_factor("1,2") == 1200
    assert parse_factor("1.3") == 1300
    assert charge(600, 1200, 0) == (720, 0)
    assert charge(1200, 1300, 900) == (900 + 390, 900)   # 15 min included, the rest +0.3
    for bad in ("0", "-1", "abc", "1.2345", "100001"):
        with pytest.raises(InvalidInput):
            parse_factor(bad)


def test_zones_from_a_german_and_a_swiss_project() -> None:
    assert classify("DE", mobile=False, home="DE") is Zone.NATIONAL
    assert classify("DE", mobile=True, home="DE") is Zone.NATIONAL_MOBILE
    assert classify("AT", mobile=False, home="DE") is Zone.EU
    assert classify("CH", mobile=True, home="DE") is Zone.EUROPE
    assert classify("DE", mobile=False, home="CH") is Zone.EU
    assert classify("US", mobile=False, home="DE") is Zone.WORLD
    tariff = ZoneTariff(national=1200, eu=1300)
    assert tariff.factor(Zone.INTERNAL) == 1000 and tariff.factor(Zone.EU) == 1300
    with pytest.raises(ValueError):
        ZoneTariff(world=0)


def test_the_quota_month_is_the_projects_calendar_month() -> None:
    # 2026-11-30 23:30 UTC is already December in Zürich (UTC+1)
    at = 1_796_081_400_000
    assert month_of(at, "UTC") == "2026-11"
    assert month_of(at, "Europe/Zurich") == "2026-12"
