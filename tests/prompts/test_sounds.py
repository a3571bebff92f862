"""The committed audio: every sound a flow can play exists, as Asterisk needs it.

Read with the stdlib ``wave`` module only: no espeak-ng, ffmpeg or pydub.
"""

from __future__ import annotations

import array
import hashlib
import json
import sys
import wave
from pathlib import Path

import pytest

from prompts import LANGUAGES, SOUNDS_DIR, all_sounds, text_of
from prompts.build import BUILD_INFO, build_settings

REBUILD = "run `python -m prompts.build` (needs espeak-ng) and commit prompts/sounds/"
CASES = [(lang, name) for lang in LANGUAGES for name in sorted(all_sounds())]


def _path(language: str, name: str) -> Path:
    return SOUNDS_DIR / language / f"{name}.wav"


@pytest.mark.parametrize(("language", "name"), CASES, ids=[f"{lang}/{n}" for lang, n in CASES])
def test_sound_exists_as_8khz_mono_16bit_pcm(language: str, name: str) -> None:
    path = _path(language, name)
    assert path.is_file(), f"missing {path}: {REBUILD}"
    with wave.open(str(path), "rb") as f:
        assert f.getcomptype() == "NONE"
        assert f.getframerate() == 8000
        assert f.getnchannels() == 1
        assert f.getsampwidth() == 2
        frames = f.readframes(f.getnframes())
        seconds = f.getnframes() / 8000
    assert 0.1 <= seconds <= 10, f"{path} lasts {seconds:.2f} s"
    samples = array.array("h", frames)
    if sys.byteorder == "big":
        samples.byteswap()
    peak = max(abs(s) for s in samples)
    assert 3000 < peak < 32767, f"{path}: peak {peak} is silent or clipped"


def test_no_stray_files() -> None:
    expected = {_path(lang, name) for lang, name in CASES}
    found = {
        p for p in SOUNDS_DIR.rglob("*.wav") if "custom" not in p.relative_to(SOUNDS_DIR).parts
    }
    assert found - expected == set(), REBUILD


def test_total_size_is_reasonable() -> None:
    total = sum(p.stat().st_size for p in SOUNDS_DIR.rglob("*.wav"))
    assert total < 8_000_000


def _info() -> dict[str, object]:
    data = json.loads((SOUNDS_DIR / BUILD_INFO).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_built_files_say_the_current_texts() -> None:
    # build-info.json records the text each file was rendered from: an edit
    # of manifest.toml (or of the number words) without a rebuild fails here.
    sounds = _info()["sounds"]
    assert isinstance(sounds, dict)
    stale = [
        f"{lang}/{name}"
        for lang, name in CASES
        if sounds.get(lang, {}).get(name, {}).get("text") != text_of(name, lang)
    ]
    assert stale == [], f"stale audio for {stale[:5]}…: {REBUILD}"


def test_built_files_are_the_recorded_ones() -> None:
    sounds = _info()["sounds"]
    assert isinstance(sounds, dict)
    for lang, name in CASES:
        digest = hashlib.sha256(_path(lang, name).read_bytes()).hexdigest()
        assert digest == sounds[lang][name]["sha256"], f"{lang}/{name} changed: {REBUILD}"


def test_built_with_the_current_settings() -> None:
    assert _info()["settings"] == build_settings(), REBUILD
