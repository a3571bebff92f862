"""The builder, driven by a fake espeak-ng so the tests need no speech synthesiser.

The fake speaks a tone whose pitch and length depend on the text, padded with
silence, like espeak-ng's own 22,050 Hz mono output. One test uses the real
espeak-ng where it is installed, to check that the build is reproducible.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import sys
import wave
from pathlib import Path

import pytest

from prompts import LANGUAGES, PromptBuildError, PromptToolMissing, text_of
from prompts import build as build_module
from prompts.build import BUILD_INFO, build, main, spoken_text

FAKE_ESPEAK = (
    "#!"
    + sys.executable
    + """
import array, math, os, sys, wave
args = sys.argv[1:]
if args == ["--version"]:
    print("eSpeak NG text-to-speech: 0.0-fake  Data at: /nowhere")
    sys.exit(0)
if os.environ.get("FAKE_ESPEAK_FAIL"):
    print("fake failure", file=sys.stderr)
    sys.exit(3)
opts = {}
while args:
    flag = args.pop(0)
    opts[flag] = args.pop(0) if flag in ("-v", "-s", "-p", "-a", "-g", "-b", "-w", "-f") else ""
with open(opts["-f"], encoding="utf-8") as f:
    text = f.read()
with open(os.environ["FAKE_ESPEAK_LOG"], "a", encoding="utf-8") as log:
    log.write(opts["-v"] + "|" + text + "\\n")
rate = 22050
freq = 200 + sum(map(ord, text)) % 800
body = [int(8000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(rate * len(text) // 40)]
pad = [0] * (rate // 10)
with wave.open(opts["-w"], "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(rate)
    w.writeframes(array.array("h", pad + body + pad).tobytes())
"""
)

SOME_SOUNDS = {"ivr/enter-pin", "ivr/digits/21", "ivr/time/left"}


@pytest.fixture
def fake_espeak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a fake espeak-ng first on PATH; return the log of what it was asked to say."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "espeak-ng"
    script.write_text(FAKE_ESPEAK, encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "espeak.log"
    log.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_ESPEAK_LOG", str(log))
    monkeypatch.setattr(build_module, "all_sounds", lambda: set(SOME_SOUNDS))
    return log


def test_missing_espeak_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    with pytest.raises(
        PromptToolMissing, match=r"espeak-ng is not installed: apt-get install espeak-ng"
    ):
        build(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_language_is_refused(fake_espeak: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported language"):
        build(tmp_path / "out", languages=["fr"])


def test_build_writes_every_sound_per_language(fake_espeak: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    calls: list[tuple[int, int, str]] = []
    written = build(out, progress=lambda done, total, name: calls.append((done, total, name)))

    expected = {out / lang / f"{name}.wav" for lang in LANGUAGES for name in SOME_SOUNDS}
    assert set(written) == expected
    for path in written:
        with wave.open(str(path)) as f:
            assert (f.getframerate(), f.getnchannels(), f.getsampwidth()) == (8000, 1, 2)
    total = len(expected)
    assert [c[:2] for c in calls] == [(i, total) for i in range(1, total + 1)]
    assert {c[2] for c in calls} == {f"{lang}/{n}" for lang in LANGUAGES for n in SOME_SOUNDS}


def test_espeak_gets_the_voice_and_the_respelled_text(fake_espeak: Path, tmp_path: Path) -> None:
    build(tmp_path / "out", languages=["de"])
    said = fake_espeak.read_text(encoding="utf-8").splitlines()
    assert "de|Bitte geben Sie Ihre Pinn ein und bestätigen Sie mit der Raute-Taste." in said
    assert "de|einundzwanzig" in said
    assert all(line.startswith("de|") for line in said)


def test_build_info_records_texts_digests_and_settings(fake_espeak: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(out)
    info = json.loads((out / BUILD_INFO).read_text(encoding="utf-8"))
    assert info["tool"] == "eSpeak NG text-to-speech: 0.0-fake"
    assert info["settings"] == build_module.build_settings()
    for lang in LANGUAGES:
        for name in SOME_SOUNDS:
            entry = info["sounds"][lang][name]
            assert entry["text"] == text_of(name, lang)
            path = out / lang / f"{name}.wav"
            assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_is_reproducible(fake_espeak: Path, tmp_path: Path) -> None:
    build(tmp_path / "one")
    build(tmp_path / "two")
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.*"))
    assert files
    for rel in files:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes()


def test_build_prunes_old_sounds_but_not_custom_recordings(
    fake_espeak: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    old = out / "de" / "ivr" / "digits" / "100.wav"
    custom = out / "de" / "ivr" / "custom" / "acme" / "welcome.wav"
    gone_dir = out / "de" / "ivr" / "retired" / "x.wav"
    for path in (old, custom, gone_dir):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF")
    build(out, languages=["de"])
    assert not old.exists()
    assert not gone_dir.parent.exists()
    assert custom.read_bytes() == b"RIFF"


def test_building_one_language_keeps_the_others_info(fake_espeak: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(out)
    build(out, languages=["en"])
    info = json.loads((out / BUILD_INFO).read_text(encoding="utf-8"))
    assert set(info["sounds"]) == {"de", "en"}


def test_failing_espeak_is_a_build_error(
    fake_espeak: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ESPEAK_FAIL", "1")
    with pytest.raises(PromptBuildError, match="fake failure"):
        build(tmp_path / "out")


def test_cli_builds_and_checks(
    fake_espeak: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["--out", str(out)]) == 0
    assert "wrote 6 files" in capsys.readouterr().err
    assert main(["--out", str(out), "--check"]) == 0
    (out / "en" / "ivr" / "time" / "left.wav").write_bytes(b"tampered")
    assert main(["--out", str(out), "--check"]) == 1
    assert "differs: en/ivr/time/left.wav" in capsys.readouterr().err


def test_cli_reports_a_missing_tool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["--out", str(tmp_path / "out")]) == 1
    assert "PromptToolMissing: espeak-ng is not installed" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "language", "said"),
    [
        ("Ihre PIN ist gültig.", "de", "Ihre Pinn ist gültig."),
        ("your PIN, followed", "en", "your pin, followed"),
        ("PINs and SPIN", "en", "PINs and SPIN"),  # whole words only
        ("Ihre Rufnummer", "de", "Ihre Ruhfnummer"),
    ],
)
def test_spoken_text_respells_whole_words(text: str, language: str, said: str) -> None:
    assert spoken_text(text, language) == said


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_real_espeak_is_reproducible_and_matches_the_committed_files(tmp_path: Path) -> None:
    from prompts import SOUNDS_DIR

    espeak = build_module._espeak()
    results = []
    for run in ("a", "b"):
        workdir = tmp_path / run
        workdir.mkdir()
        raw = build_module._render(
            espeak, spoken_text(text_of("ivr/digits/12", "de"), "de"), "de", workdir
        )
        results.append(build_module._finish(raw, "de/ivr/digits/12"))
    assert results[0] == results[1]
    info = json.loads((SOUNDS_DIR / BUILD_INFO).read_text(encoding="utf-8"))
    if info["tool"] != build_module._tool_version(espeak):
        pytest.skip(f"committed files were built with {info['tool']}")
    assert results[0] == (SOUNDS_DIR / "de" / "ivr" / "digits" / "12.wav").read_bytes()
