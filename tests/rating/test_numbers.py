from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rating.errors import InvalidInput
from rating.numbers import PatternSet, compile_pattern, matches, parse_caller

digits = st.text("0123456789", min_size=3, max_size=12)
patterns = st.builds(lambda plus, body, dot: ("+" if plus else "") + body + ("." if dot else ""),
                     st.booleans(), st.text("0123456789x", min_size=2, max_size=12), st.booleans())


@given(st.lists(patterns, max_size=8), digits, st.sampled_from(["CH", "DE"]))
def test_pattern_set_agrees_with_matching_one_by_one(pats: list[str], number: str, region: str) -> None:
    caller = parse_caller(number, region)
    expected = any(matches(p, caller) for p in pats)
    found = PatternSet(pats).first_match(caller)
    assert (found is not None) == expected
    if found is not None:
        assert matches(found, caller)


@pytest.mark.parametrize("pattern,number,region,blocked", [
    ("04412345x", "044123456", "CH", True),
    ("04412345x", "0441234567", "CH", False),        # x is exactly one digit
    ("0791234567", "+41791234567", "CH", True),      # national pattern, E.164 caller
    ("+41791234567", "0791234567", "CH", True),      # E.164 pattern, national caller
    ("0041791234567", "+41791234567", "CH", True),
    ("0900.", "+41900123456", "CH", True),
    ("+4930.", "030123456", "DE", True),
    ("+4930.", "040123456", "DE", False),
])
def test_telco_notation(pattern: str, number: str, region: str, blocked: bool) -> None:
    assert matches(pattern, parse_caller(number, region)) is blocked
    assert (PatternSet([pattern]).first_match(parse_caller(number, region)) is not None) is blocked


@pytest.mark.parametrize("bad", ["", "abc", "12-34", "1.2", "x+1", "++1"])
def test_bad_patterns_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        compile_pattern(bad)
    with pytest.raises(InvalidInput):
        PatternSet([bad])


def test_withheld_numbers_are_anonymous() -> None:
    for raw in ["unknown", "anonymous", "", "Restricted", "+"]:
        assert parse_caller(raw, "CH").anonymous
