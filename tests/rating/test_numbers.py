from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rating.errors import InvalidInput
from rating.numbers import (
    PatternSet,
    block_key,
    block_matches,
    compile_pattern,
    normalise_block,
    parse_caller,
    region_of_number,
    trunk_prefix,
    whole_countries,
)

digits = st.text("0123456789", min_size=3, max_size=12)
patterns = st.builds(lambda plus, body, dot: ("+" if plus else "") + body + ("." if dot else ""),
                     st.booleans(), st.text("0123456789x", min_size=2, max_size=12), st.booleans())


@given(st.lists(patterns, max_size=8), digits, st.sampled_from(["CH", "DE", "PL"]))
def test_pattern_set_agrees_with_matching_one_by_one(pats: list[str], number: str, region: str) -> None:
    caller = parse_caller(number, region)
    expected = any(block_matches(p, caller, region) for p in pats)
    found = PatternSet(pats, region).first_match(caller)
    assert (found is not None) == expected
    if found is not None:
        assert block_matches(found, caller, region)


@pytest.mark.parametrize("pattern,number,region,blocked", [
    ("04412345x", "044123456", "CH", True),
    ("04412345x", "0441234567", "CH", False),        # x is exactly one digit
    ("0791234567", "+41791234567", "CH", True),      # national pattern, E.164 caller
    ("+41791234567", "0791234567", "CH", True),      # E.164 pattern, national caller
    ("0041791234567", "+41791234567", "CH", True),
    ("0900.", "+41900123456", "CH", True),
    ("+4930.", "030123456", "DE", True),
    ("+4930.", "040123456", "DE", False),
    # issue 12: a national block means its own country, never the caller's
    ("0795556677", "+49795556677", "CH", False),
    ("0795556677", "+33795556677", "CH", False),
    ("0900.", "+49900123456", "CH", False),
    ("0900.", "+49900123456", "DE", True),
    ("123456789", "+48123456789", "PL", True),       # no trunk prefix: national as is
    ("4.", "+41791234567", "CH", True),              # stored before: bare digits were E.164 without +
])
def test_telco_notation(pattern: str, number: str, region: str, blocked: bool) -> None:
    assert block_matches(pattern, parse_caller(number, region), region) is blocked
    assert (PatternSet([pattern], region).first_match(parse_caller(number, region)) is not None) is blocked


@pytest.mark.parametrize("typed,region,stored", [
    ("0795556677", "CH", "+41795556677"),
    ("0041795556677", None, "+41795556677"),
    ("+41795556677", "DE", "+41795556677"),          # E.164 ignores the region
    ("0900.", "CH", "+41900."),
    ("0900.", "DE", "+49900."),
    ("04412345x", "CH", "+414412345x"),
    ("123456789", "PL", "+48123456789"),
    ("+417.", None, "+417."),
])
def test_blocks_are_normalised_to_e164_prefix_form(typed: str, region: str | None, stored: str) -> None:
    assert normalise_block(typed, region) == stored
    assert block_key(stored, region) == stored
    if not typed.startswith(("+", "00")):
        assert block_key(typed, region) == stored   # a national entry stored before means the same


@pytest.mark.parametrize("typed,region,message", [
    ("0900.", None, "is national, but national numbers mean a different country in each project"),
    ("4.", "CH", "is neither national"),
    ("795556677", "CH", "is neither national"),
    ("0.", "CH", "blocks every number of +41 (CH); add --whole-country"),
    ("+41.", None, "blocks every number of +41 (CH)"),
    ("+42.", None, "blocks every number of +420 (CZ), +421 (SK), +423 (LI)"),
    ("+41xxxxxxxxx", None, "blocks every number of +41 (CH)"),
    ("+1.", None, "blocks every number of +1 (US)"),
    ("+41", None, "no more than a country code"),
    ("00.", None, "would block every number"),
])
def test_whole_countries_and_nonsense_are_refused(typed: str, region: str | None, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        normalise_block(typed, region)


def test_whole_countries_only_when_asked() -> None:
    assert normalise_block("0.", "CH", whole_country=True) == "+41."
    assert normalise_block("+4.", None, whole_country=True) == "+4."
    assert whole_countries("+4.")[:3] == ("40", "41", "43")
    assert whole_countries("+41.") == ("41",)
    assert whole_countries("+417.") == whole_countries("+41x") == ()
    with pytest.raises(InvalidInput, match="every number"):
        normalise_block("+x.", None, whole_country=True)


def test_region_of_number() -> None:
    assert region_of_number("+41441234567") == "CH"
    assert region_of_number("+4930123456") == "DE"
    assert region_of_number("+80012345678") is None   # non-geographic
    assert trunk_prefix("CH") == "0" and trunk_prefix("PL") is None


@pytest.mark.parametrize("bad", ["", "abc", "12-34", "1.2", "x+1", "++1"])
def test_bad_patterns_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        compile_pattern(bad)
    with pytest.raises(InvalidInput):
        PatternSet([bad], "CH")


def test_withheld_numbers_are_anonymous() -> None:
    for raw in ["unknown", "anonymous", "", "Restricted", "+"]:
        assert parse_caller(raw, "CH").anonymous
