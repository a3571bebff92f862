"""The prompt catalogue: every sound a call flow can play, and what it says.

Sound names are what Asterisk's ``STREAM FILE`` / ``Playback`` take: a path
without extension, relative to the language directory (``sounds/<lang>/``,
Asterisk's layout for ``CHANNEL(language)``). All of ours live under ``ivr/``:

    ivr/<prompt>            a Prompt member (ivr/enter-pin)
    ivr/time/<word>         the words of the remaining-time sentence
    ivr/digits/<n>          number pieces, see _numbers.py
    ivr/warning/<seconds>   the cut-off warning, one whole file per length, see _warning.py
    ivr/custom/<project>/   recordings a line operator imported, see importer.py

Texts come from manifest.toml (read once, with tomllib) and, for numbers,
from _numbers.py; a warning's text is assembled here from the manifest's
``[warning]`` frame and ``[time]`` words.
"""

from __future__ import annotations

import enum
import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import _numbers, _warning
from ._errors import PromptCatalogueError

__all__ = [
    "LANGUAGES",
    "MANIFEST_PATH",
    "SOUNDS_DIR",
    "TIME_WORDS",
    "WARNING_WORDS",
    "Prompt",
    "all_sounds",
    "check_language",
    "pronunciations",
    "sound",
    "text_of",
    "time_sound",
    "warning_text",
]

LANGUAGES: tuple[str, ...] = ("de", "en")

_HERE = Path(__file__).resolve().parent
MANIFEST_PATH = _HERE / "manifest.toml"
#: Built audio: SOUNDS_DIR/<lang>/ivr/<name>.wav
SOUNDS_DIR = _HERE / "sounds"

_IVR = "ivr/"
_TIME = "ivr/time/"

#: The [time.*] keys manifest.toml must have.
TIME_WORDS = frozenset(
    {"you-have", "minute", "minutes", "and", "second", "seconds", "left", "none"}
)
#: The [warning.*] keys manifest.toml must have.
WARNING_WORDS = frozenset({"ends-in", "one"})


class Prompt(enum.StrEnum):
    """Every whole prompt a call flow plays; the value is the file stem."""

    WELCOME = "welcome"
    ENTER_PIN = "enter-pin"
    OTHER_CARD_PIN = "other-card-pin"
    PIN_ACCEPTED = "pin-accepted"
    PIN_WRONG = "pin-wrong"
    PIN_TOO_MANY = "pin-too-many"
    NO_CREDIT = "no-credit"
    CARD_BLOCKED = "card-blocked"
    CARD_EXPIRED = "card-expired"
    CARD_IN_USE = "card-in-use"
    NUMBER_BLOCKED = "number-blocked"
    NOT_IN_SERVICE = "not-in-service"
    SERVICE_UNAVAILABLE = "service-unavailable"
    SERVICE_SUSPENDED = "service-suspended"
    CLOSED = "closed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    ONE_MINUTE_WARNING = "one-minute-warning"
    GOODBYE = "goodbye"


def check_language(language: str) -> str:
    """Return ``language`` if the catalogue has it; raise ``ValueError`` if not."""
    if language not in LANGUAGES:
        raise ValueError(
            f"unsupported language {language!r}: prompts exist in {', '.join(LANGUAGES)}"
        )
    return language


def sound(prompt: Prompt) -> str:
    """Return the Asterisk sound name of ``prompt``, e.g. ``"ivr/enter-pin"``.

    Raises ``ValueError`` if ``prompt`` is not a Prompt value.
    """
    return _IVR + Prompt(prompt).value


def time_sound(word: str) -> str:
    """Return the sound name of a remaining-time word, e.g. ``"ivr/time/minutes"``."""
    if word not in TIME_WORDS:
        raise ValueError(f"unknown remaining-time word {word!r}")
    return _TIME + word


@dataclass(frozen=True)
class _Catalogue:
    texts: Mapping[str, Mapping[str, str]]  # sound name -> language -> text
    warning: Mapping[str, Mapping[str, str]]  # [warning] word -> language -> text
    pronounce: Mapping[str, Mapping[str, str]]  # language -> word -> respelling


def _texts_table(data: object, where: str) -> dict[str, str]:
    if not isinstance(data, dict):
        raise PromptCatalogueError(f"{where}: expected a table of texts per language")
    missing = [lang for lang in LANGUAGES if lang not in data]
    if missing:
        raise PromptCatalogueError(f"{where}: no text for {', '.join(missing)}")
    extra = sorted(set(data) - set(LANGUAGES))
    if extra:
        raise PromptCatalogueError(f"{where}: unknown language(s) {', '.join(extra)}")
    texts: dict[str, str] = {}
    for lang in LANGUAGES:
        text = data[lang]
        if not isinstance(text, str) or not text.strip():
            raise PromptCatalogueError(f"{where}.{lang}: expected a non-empty string")
        texts[lang] = text
    return texts


def parse_manifest(data: Mapping[str, object], where: str = "manifest.toml") -> _Catalogue:
    """Validate a parsed manifest and index its texts by sound name.

    Raises ``PromptCatalogueError`` naming the offending key.
    """
    unknown = sorted(set(data) - {"prompts", "time", "warning", "pronounce"})
    if unknown:
        raise PromptCatalogueError(f"{where}: unknown table(s) {', '.join(unknown)}")
    prompts = data.get("prompts", {})
    words = data.get("time", {})
    pronounce = data.get("pronounce", {})
    warning = data.get("warning", {})
    if not isinstance(prompts, dict) or not isinstance(words, dict) or not isinstance(warning, dict):
        raise PromptCatalogueError(f"{where}: [prompts], [time] and [warning] must be tables")
    if not isinstance(pronounce, dict):
        raise PromptCatalogueError(f"{where}: [pronounce] must be a table")

    expected = {p.value for p in Prompt}
    if set(prompts) != expected:
        missing = sorted(expected - set(prompts))
        extra = sorted(set(prompts) - expected)
        raise PromptCatalogueError(
            f"{where}: [prompts] must match the Prompt enum"
            f" (missing: {', '.join(missing) or '-'}; unknown: {', '.join(extra) or '-'})"
        )
    if set(words) != TIME_WORDS:
        missing = sorted(TIME_WORDS - set(words))
        extra = sorted(set(words) - TIME_WORDS)
        raise PromptCatalogueError(
            f"{where}: [time] needs exactly {', '.join(sorted(TIME_WORDS))}"
            f" (missing: {', '.join(missing) or '-'}; unknown: {', '.join(extra) or '-'})"
        )

    if set(warning) != WARNING_WORDS:
        missing = sorted(WARNING_WORDS - set(warning))
        extra = sorted(set(warning) - WARNING_WORDS)
        raise PromptCatalogueError(
            f"{where}: [warning] needs exactly {', '.join(sorted(WARNING_WORDS))}"
            f" (missing: {', '.join(missing) or '-'}; unknown: {', '.join(extra) or '-'})"
        )

    texts: dict[str, dict[str, str]] = {}
    for stem, table in prompts.items():
        texts[_IVR + stem] = _texts_table(table, f"{where} [prompts.{stem}]")
    for stem, table in words.items():
        texts[_TIME + stem] = _texts_table(table, f"{where} [time.{stem}]")

    respell: dict[str, dict[str, str]] = {lang: {} for lang in LANGUAGES}
    for lang, table in pronounce.items():
        if lang not in LANGUAGES or not isinstance(table, dict):
            raise PromptCatalogueError(f"{where} [pronounce.{lang}]: unknown language")
        for word, said in table.items():
            if not isinstance(said, str) or not said.strip():
                raise PromptCatalogueError(
                    f"{where} [pronounce.{lang}] {word}: expected a non-empty string"
                )
            respell[lang][word] = said
    frame = {word: _texts_table(table, f"{where} [warning.{word}]") for word, table in warning.items()}
    return _Catalogue(texts=texts, warning=frame, pronounce=respell)


@functools.cache
def _catalogue() -> _Catalogue:
    try:
        with MANIFEST_PATH.open("rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PromptCatalogueError(f"cannot read {MANIFEST_PATH}: {exc}") from exc
    return parse_manifest(data)


def text_of(sound_name: str, language: str) -> str:
    """Return the text that the piece ``sound_name`` says in ``language``.

    Raises ``ValueError`` for an unknown sound name or language.
    """
    check_language(language)
    texts = _catalogue().texts.get(sound_name)
    if texts is not None:
        return texts[language]
    if _warning.is_warning_sound(sound_name):
        return warning_text(_warning.warning_seconds(sound_name), language)
    try:
        return _numbers.number_text(sound_name, language)
    except KeyError:
        raise ValueError(f"unknown sound {sound_name!r}") from None


def all_sounds() -> set[str]:
    """Return every sound name a flow can play (custom recordings aside).

    Every Prompt, every remaining-time word, every number piece and every
    warning length; each exists as ``SOUNDS_DIR/<lang>/<name>.wav`` for every
    language.
    """
    return set(_catalogue().texts) | _numbers.number_sounds() | _warning.warning_sounds()


def warning_text(seconds: int, language: str) -> str:
    """Return what the warning ``seconds`` before the end says, e.g. "Ihre Gesprächszeit
    endet in einer Minute und dreißig Sekunden." (the dative "einer" before Minute/Sekunde).

    Raises ``ValueError`` for a length not in ``WARNING_LENGTHS`` or an unsupported language.
    """
    check_language(language)
    if seconds not in _warning.WARNING_LENGTHS:
        raise ValueError(f"no warning prompt for {seconds} s (see WARNING_LENGTHS)")
    catalogue = _catalogue()

    def word(key: str) -> str:
        return catalogue.texts[_TIME + key][language]

    def amount(n: int, one: str, many: str) -> str:
        if n == 1:
            return f"{catalogue.warning['one'][language]} {word(one)}"
        return f"{_numbers.number_text(_numbers.number_sound(n), language)} {word(many)}"

    minutes, secs = divmod(seconds, 60)
    parts = []
    if minutes:
        parts.append(amount(minutes, "minute", "minutes"))
    if secs:
        parts.append(amount(secs, "second", "seconds"))
    glue = f" {word('and')} "
    return f"{catalogue.warning['ends-in'][language]} {glue.join(parts)}."


def pronunciations(language: str) -> Mapping[str, str]:
    """Return the respellings espeak-ng needs for ``language`` (word -> said as)."""
    return _catalogue().pronounce[check_language(language)]
