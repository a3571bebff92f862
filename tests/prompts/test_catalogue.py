"""The catalogue: Prompt, sound names, manifest.toml and the texts."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import prompts
from prompts import LANGUAGES, SOUNDS_DIR, Prompt, all_sounds, sound, text_of
from prompts._catalogue import MANIFEST_PATH, parse_manifest

PACKAGE_DIR = Path(prompts.__file__).parent

REQUIRED_PROMPTS = {
    "WELCOME": "welcome",
    "ENTER_PIN": "enter-pin",
    "OTHER_CARD_PIN": "other-card-pin",
    "PIN_ACCEPTED": "pin-accepted",
    "PIN_WRONG": "pin-wrong",
    "PIN_TOO_MANY": "pin-too-many",
    "NO_CREDIT": "no-credit",
    "CARD_BLOCKED": "card-blocked",
    "CARD_EXPIRED": "card-expired",
    "CARD_IN_USE": "card-in-use",
    "NUMBER_BLOCKED": "number-blocked",
    "NOT_IN_SERVICE": "not-in-service",
    "SERVICE_UNAVAILABLE": "service-unavailable",
    "SERVICE_SUSPENDED": "service-suspended",
    "CLOSED": "closed",
    "BUSY": "busy",
    "NO_ANSWER": "no-answer",
    "ONE_MINUTE_WARNING": "one-minute-warning",
    "GOODBYE": "goodbye",
}


def test_public_api_names() -> None:
    for name in (
        "LANGUAGES", "Prompt", "sound", "remaining_time", "remaining_time_text",
        "all_sounds", "text_of", "SOUNDS_DIR",
    ):  # fmt: skip
        assert name in prompts.__all__
        assert hasattr(prompts, name)
    assert LANGUAGES == ("de", "en")
    assert SOUNDS_DIR == PACKAGE_DIR / "sounds"


def test_prompt_members_and_values() -> None:
    assert {p.name: p.value for p in Prompt} == REQUIRED_PROMPTS
    assert isinstance(Prompt.ENTER_PIN, str)  # StrEnum: usable where a str is
    assert f"{Prompt.ENTER_PIN}" == "enter-pin"


@pytest.mark.parametrize("prompt", list(Prompt))
def test_sound_name(prompt: Prompt) -> None:
    assert sound(prompt) == f"ivr/{prompt.value}"
    assert sound(prompt) in all_sounds()


def test_sound_accepts_the_value_and_refuses_strangers() -> None:
    assert sound("enter-pin") == "ivr/enter-pin"  # type: ignore[arg-type]  # a str value works too
    with pytest.raises(ValueError):
        sound("nope")  # type: ignore[arg-type]  # the point of the test


def test_manifest_matches_the_enum_and_every_language() -> None:
    data = tomllib.loads(MANIFEST_PATH.read_text(encoding="utf-8"))
    assert set(data["prompts"]) == {p.value for p in Prompt}
    for table in (*data["prompts"].values(), *data["time"].values()):
        assert set(table) == set(LANGUAGES)


@pytest.mark.parametrize(
    ("prompt", "de", "en"),
    [
        (Prompt.ENTER_PIN,
         "Bitte geben Sie Ihre PIN ein und bestätigen Sie mit der Raute-Taste.",
         "Please enter your PIN, followed by the hash key."),
        (Prompt.PIN_ACCEPTED,
         "Vielen Dank, Ihre PIN wurde bestätigt.", "Thank you, your PIN has been accepted."),
        (Prompt.NO_CREDIT,
         "Ihr Guthaben ist aufgebraucht. Bitte wenden Sie sich an Ihren Anbieter.",
         "Your card has no time left. Please contact your provider."),
        (Prompt.ONE_MINUTE_WARNING,
         "Ihre Gesprächszeit endet in einer Minute.", "Your call will end in one minute."),
        (Prompt.GOODBYE, "Auf Wiederhören.", "Goodbye."),
    ],
)  # fmt: skip
def test_wording_follows_the_glossary(prompt: Prompt, de: str, en: str) -> None:
    assert text_of(sound(prompt), "de") == de
    assert text_of(sound(prompt), "en") == en


def test_every_sound_has_a_text_in_every_language() -> None:
    for name in all_sounds():
        for language in LANGUAGES:
            assert text_of(name, language).strip()


def test_all_sounds_are_asterisk_names_under_ivr() -> None:
    for name in all_sounds():
        assert name.startswith("ivr/")
        assert not name.endswith(".wav")
        assert ".." not in name.split("/")
        assert not name.startswith("ivr/custom/")


def test_text_of_refuses_unknown_names_and_languages() -> None:
    with pytest.raises(ValueError, match="unknown sound"):
        text_of("ivr/nope", "de")
    with pytest.raises(ValueError, match="unknown sound"):
        text_of("ivr/digits/100", "de")  # pieces stop at 99
    with pytest.raises(ValueError, match="unsupported language"):
        text_of("ivr/goodbye", "fr")


def _good_manifest() -> dict[str, object]:
    return tomllib.loads(MANIFEST_PATH.read_text(encoding="utf-8"))


def test_parse_manifest_accepts_the_real_one() -> None:
    catalogue = parse_manifest(_good_manifest())
    assert catalogue.texts["ivr/busy"]["de"] == "Der Teilnehmer ist besetzt."


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m["prompts"].pop("busy"), r"missing: busy"),
        (lambda m: m["prompts"].update({"extra": {"de": "x", "en": "y"}}), r"unknown: extra"),
        (lambda m: m["prompts"]["busy"].pop("en"), r"prompts\.busy\]: no text for en"),
        (lambda m: m["prompts"]["busy"].update({"fr": "x"}), r"unknown language"),
        (lambda m: m["prompts"]["busy"].update({"de": "  "}), r"non-empty string"),
        (lambda m: m["time"].pop("left"), r"\[time\] needs exactly"),
        (lambda m: m.update({"bogus": {}}), r"unknown table"),
        (lambda m: m["pronounce"].update({"fr": {"a": "b"}}), r"pronounce\.fr"),
    ],
)
def test_parse_manifest_names_what_is_wrong(mutate: object, message: str) -> None:
    manifest = _good_manifest()
    mutate(manifest)  # type: ignore[operator]  # the lambdas above
    with pytest.raises(prompts.PromptCatalogueError, match=message):
        parse_manifest(manifest)


def test_importing_prompts_loads_no_audio_library() -> None:
    # The engine imports prompts on every start; pydub (and its audioop and
    # ffmpeg warnings) belongs to the builder and the importer only.
    code = "import sys, prompts; sys.exit('pydub' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], check=False, cwd=PACKAGE_DIR.parent
    )
    assert result.returncode == 0


def test_prompts_imports_none_of_the_other_layers() -> None:
    for path in PACKAGE_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & {"agi", "ivr", "rating"}, f"{path.name} imports {roots}"
