"""The time a caller is told before the Dial is the hold's own L(), never more (issue 12).

The flow announces ``max_talk(rule, grant.reserved_s, factor, quota)`` of the first leg,
the very value it gives Dial as ``L()``. These properties tie that value to the hold
``grant_hold`` made: at the card's own factor it is exactly the hold's talk time, its
charge fits the hold, the hold fits this call's share of the free time, and a dearer
zone never allows more."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rating.billing import BillingRule
from rating.errors import InsufficientBalance
from rating.holds import grant_hold
from rating.models import Card
from rating.zones import FACTOR_UNIT, charge, max_talk

rules = st.builds(BillingRule, connect_s=st.integers(0, 60), minimum_s=st.integers(0, 300),
                  initial_s=st.integers(1, 120), increment_s=st.integers(1, 60))


def card(balance: int, active: int) -> Card:
    return Card(id=1, project_id=1, note="", blocked=False, balance_s=balance, reserved_s=0, active_calls=active,
                price_cents=0, created_ms=0, activated_ms=0, expires_ms=None)


@given(rules, st.integers(0, 100_000), st.integers(1, 10), st.data())
def test_the_announced_time_is_the_holds_talk_and_fits_the_calls_share(rule: BillingRule, balance: int,
                                                                       max_calls: int, data: st.DataObject) -> None:
    active = data.draw(st.integers(0, max_calls - 1))
    c = card(balance, active)
    try:
        plan = grant_hold(c, rule=rule, max_calls=max_calls, hold_s=600, now_ms=0)
    except InsufficientBalance:
        assert rule.max_talk(balance // (max_calls - active)) <= 0
        return
    announced = max_talk(rule, plan.seconds, FACTOR_UNIT, 0)
    assert announced == plan.max_talk_s                        # what is said is what L() gets
    share = balance // (max_calls - active)
    assert rule.debit(announced) <= plan.seconds <= share      # affordable within this call's share
    assert rule.debit(announced + 1) > share                   # and no second of the share is kept back


@given(rules, st.integers(1, 100_000), st.integers(1000, 5000), st.integers(0, 3600))
def test_a_dearer_zone_never_allows_more_and_its_charge_fits(rule: BillingRule, hold: int, factor: int,
                                                             quota: int) -> None:
    dearer = max_talk(rule, hold, factor, quota)
    assert dearer <= max_talk(rule, hold, FACTOR_UNIT, quota)
    if dearer > 0:
        charged, _ = charge(rule.debit(dearer), factor, quota)
        assert charged <= hold
