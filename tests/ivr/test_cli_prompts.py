from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest
from click.testing import CliRunner

from ivr.cli import main
from prompts import Prompt
from tests.prompts._helpers import ffmpeg_exe


def wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(b"\x00\x10\x00\x20" * 44100)
    return path


def run(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), env=env)


def test_list_shows_every_prompt_with_its_text() -> None:
    result = run("prompts", "list", "--language", "en", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert [r["prompt"] for r in rows] == [p.value for p in Prompt]
    assert any(r["text"].startswith("Please enter your PIN") for r in rows)


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A database with project test1: a recording is only for a project that exists."""
    path = tmp_path / "ivr.sqlite3"
    monkeypatch.setenv("IVR_DATABASE", str(path))
    created = run("project", "create", "test1", "--number", "+41441234567", "--region", "CH",
                  "--service", "PJSIP/100", "--currency", "CHF")
    assert created.exit_code == 0, created.output
    return path


def test_import_converts_for_asterisk(tmp_path: Path, db: Path) -> None:
    result = run("prompts", "import", str(wav(tmp_path / "Begruessung.wav")), "--project", "test1",
                 "--prompt", "welcome", "--sounds-dir", str(tmp_path / "sounds"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["sound"] == "ivr/custom/test1/welcome"
    with wave.open(str(tmp_path / "sounds/de/ivr/custom/test1/welcome.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)


@pytest.mark.parametrize("args,exit_code", [
    (["--project", "../etc", "--prompt", "welcome"], 1),
    (["--project", "test1", "--prompt", "no-such-prompt"], 2),
])
def test_import_refuses_bad_names(tmp_path: Path, db: Path, args: list[str], exit_code: int) -> None:
    result = run("prompts", "import", str(wav(tmp_path / "a.wav")), *args, "--sounds-dir", str(tmp_path / "s"))
    assert result.exit_code == exit_code
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_build_without_espeak_is_one_clear_line(tmp_path: Path) -> None:
    result = run("prompts", "build", "--out", str(tmp_path / "out"), env={"PATH": str(tmp_path)})
    assert result.exit_code == 1
    assert "espeak-ng" in result.output.strip().splitlines()[-1]


def test_import_for_a_project_that_does_not_exist_is_refused(tmp_path: Path, db: Path) -> None:
    result = run("prompts", "import", str(wav(tmp_path / "a.wav")), "--project", "nosuch", "--prompt", "welcome",
                 "--sounds-dir", str(tmp_path / "s"))
    assert (result.exit_code, result.output.strip()) == (1, "NotFound: no project 'nosuch'")
    assert not (tmp_path / "s").exists()


def test_a_second_import_needs_yes(tmp_path: Path, db: Path) -> None:
    args = ["prompts", "import", str(wav(tmp_path / "a.wav")), "--project", "test1", "--prompt", "welcome",
            "--sounds-dir", str(tmp_path / "s")]
    assert run(*args).exit_code == 0
    target = tmp_path / "s/de/ivr/custom/test1/welcome.wav"
    before = target.read_bytes()
    again = run(*args)
    assert again.exit_code == 1
    assert again.output.strip().endswith("add --yes to replace it")
    assert run(*args, "--yes").exit_code == 0
    assert target.read_bytes() == before  # the same recording, written again with --yes


IVR = str(Path(sys.executable).with_name("ivr"))


def test_an_mp3_greeting_on_a_machine_without_ffmpeg(tmp_path: Path, db: Path) -> None:
    """The README's seed feature after `make setup` alone: no ffmpeg or ffprobe on PATH,
    the ffmpeg from the imageio-ffmpeg wheel decodes it."""
    mp3 = tmp_path / "Begruessung.mp3"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(wav(tmp_path / "a.wav")),
                    "-codec:a", "libmp3lame", str(mp3)], check=True)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    done = subprocess.run([IVR, "prompts", "import", str(mp3), "--project", "test1", "--prompt", "welcome",
                           "--sounds-dir", str(tmp_path / "sounds")], capture_output=True, text=True,
                          env={**os.environ, "PATH": str(empty)}, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "test1: calls in de now play ivr/custom/test1/welcome for welcome\n"
    with wave.open(str(tmp_path / "sounds/de/ivr/custom/test1/welcome.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert 0.9 <= w.getnframes() / 8000 <= 1.1


def test_a_fake_mp3_is_one_line_saying_it_is_not_an_mp3(tmp_path: Path, db: Path) -> None:
    fake = tmp_path / "greeting.mp3"
    fake.write_text("this is not audio, just text pretending to be\n")
    result = run("prompts", "import", str(fake), "--project", "test1", "--prompt", "welcome",
                 "--sounds-dir", str(tmp_path / "s"))
    assert result.exit_code == 1
    assert result.output.startswith(f"CliError: {fake}: not an mp3 / cannot decode: ")
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_what_ffmpeg_quotes_reaches_the_terminal_escaped(tmp_path: Path, db: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ffmpeg").write_text(
        "#!/bin/sh\ncat >/dev/null\nprintf 'tag \\033[2J\\033]0;pwned\\007\\n' >&2\nexit 1\n")
    (bin_dir / "ffmpeg").chmod(0o755)
    src = tmp_path / "x\x1b[31m.ogg"
    src.write_bytes(b"OggS\x00\x02" + bytes(100))
    result = run("prompts", "import", str(src), "--project", "test1", "--prompt", "welcome",
                 "--sounds-dir", str(tmp_path / "s"), env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert result.exit_code == 1
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert result.output.strip().endswith(r"x\x1b[31m.ogg: not an ogg / cannot decode: tag \x1b[2J\x1b]0;pwned\x07")
