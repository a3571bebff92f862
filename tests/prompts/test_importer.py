"""Custom recordings: import, lookup, validation."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from prompts import Prompt, PromptImportError, _ffmpeg, custom_sound, import_recording
from prompts import importer as importer_module
from tests.prompts._helpers import ffmpeg_exe, tone, write_wav


@pytest.fixture
def sounds(tmp_path: Path) -> Path:
    return tmp_path / "sounds"


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    """A 44.1 kHz stereo WAV: half a second of silence, 1.5 s of tone, silence."""
    return write_wav(
        tmp_path / "welcome.wav", tone(440, 44100, 1.5, pad_seconds=0.5), 44100, channels=2
    )


@pytest.fixture
def no_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without ffmpeg: none on PATH, and imageio-ffmpeg not installed."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails as if not installed


def _assert_telephony_wav(path: Path, min_s: float, max_s: float) -> None:
    with wave.open(str(path)) as f:
        assert (f.getframerate(), f.getnchannels(), f.getsampwidth()) == (8000, 1, 2)
        assert f.getcomptype() == "NONE"
        assert min_s <= f.getnframes() / 8000 <= max_s


def test_round_trip(recording: Path, sounds: Path) -> None:
    assert custom_sound("acme", "welcome", "de", sounds) is None
    name = import_recording(recording, "acme", "welcome", "de", sounds_dir=sounds)
    assert name == "ivr/custom/acme/welcome"
    stored = sounds / "de" / "ivr" / "custom" / "acme" / "welcome.wav"
    _assert_telephony_wav(stored, 1.5, 1.6)  # trimmed: the silence is gone
    assert custom_sound("acme", "welcome", "de", sounds) == name
    assert custom_sound("acme", Prompt.WELCOME, "de", sounds) == name
    assert custom_sound("acme", "welcome", "en", sounds) is None
    assert custom_sound("other", "welcome", "de", sounds) is None


def test_reimport_replaces(recording: Path, sounds: Path, tmp_path: Path) -> None:
    import_recording(recording, "acme", "goodbye", "en", sounds_dir=sounds)
    short = write_wav(tmp_path / "short.wav", tone(300, 16000, 0.5), 16000)
    import_recording(short, "acme", Prompt.GOODBYE, "en", sounds_dir=sounds)
    _assert_telephony_wav(sounds / "en" / "ivr" / "custom" / "acme" / "goodbye.wav", 0.5, 0.6)


def test_wav_needs_no_ffmpeg(recording: Path, sounds: Path, no_ffmpeg: None) -> None:
    assert import_recording(recording, "p1", "busy", "de", sounds_dir=sounds)


@pytest.mark.parametrize("bits", [8, 24, 32])
def test_other_pcm_widths(bits: int, tmp_path: Path, sounds: Path, no_ffmpeg: None) -> None:
    samples = tone(500, 16000, 0.5)
    width = bits // 8
    frames = bytearray()
    for s in samples:
        if bits == 8:
            frames.append((s >> 8) + 128)  # unsigned
        else:
            frames += (s << (bits - 16)).to_bytes(width, "little", signed=True)
    path = tmp_path / f"pcm{bits}.wav"
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(width)
        f.setframerate(16000)
        f.writeframes(bytes(frames))
    import_recording(path, "p1", "busy", "de", sounds_dir=sounds)
    _assert_telephony_wav(sounds / "de" / "ivr" / "custom" / "p1" / "busy.wav", 0.45, 0.55)


def _float_wav(path: Path) -> Path:
    data = struct.pack("<8000f", *(0.5 if i % 16 < 8 else -0.5 for i in range(8000)))
    fmt = struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)  # WAVE_FORMAT_IEEE_FLOAT
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def test_float_wav_without_ffmpeg_says_so(tmp_path: Path, sounds: Path, no_ffmpeg: None) -> None:
    src = _float_wav(tmp_path / "float.wav")
    with pytest.raises(
        PromptImportError, match=r"^ffmpeg is needed to read .*wav.*: none is on PATH and imageio-ffmpeg's is"
        r" missing \(pip install imageio-ffmpeg, or apt-get install ffmpeg\)$"
    ):
        import_recording(src, "p1", "busy", "de", sounds_dir=sounds)


def test_float_wav_with_ffmpeg(tmp_path: Path, sounds: Path) -> None:
    import_recording(_float_wav(tmp_path / "float.wav"), "p1", "busy", "de", sounds_dir=sounds)
    _assert_telephony_wav(sounds / "de" / "ivr" / "custom" / "p1" / "busy.wav", 0.9, 1.1)


def _encode(src: Path, dst: Path, *codec: str) -> Path:
    subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(src), *codec, str(dst)], check=True
    )
    return dst


def _mp3(src: Path, dst: Path) -> Path:
    return _encode(src, dst, "-codec:a", "libmp3lame", "-b:a", "64k")


def test_mp3_round_trip(recording: Path, tmp_path: Path, sounds: Path) -> None:
    mp3 = _encode(recording, tmp_path / "welcome.mp3", "-codec:a", "libmp3lame", "-b:a", "64k")
    name = import_recording(mp3, "acme", "welcome", "en", sounds_dir=sounds)
    assert name == "ivr/custom/acme/welcome"
    _assert_telephony_wav(sounds / "en" / "ivr" / "custom" / "acme" / "welcome.wav", 1.45, 1.65)


def test_ogg_round_trip(recording: Path, tmp_path: Path, sounds: Path) -> None:
    ogg = _encode(recording, tmp_path / "welcome.ogg", "-codec:a", "libvorbis")
    import_recording(ogg, "acme", "welcome", "de", sounds_dir=sounds)
    _assert_telephony_wav(sounds / "de" / "ivr" / "custom" / "acme" / "welcome.wav", 1.45, 1.65)


@pytest.mark.parametrize(("fmt", "head"), [("mp3", b"ID3\x03\x00"), ("ogg", b"OggS\x00\x02"),
                                           ("mp3", b"text named .mp3: only ffmpeg can tell")])
def test_mp3_and_ogg_without_ffmpeg_say_so(
    fmt: str, head: bytes, tmp_path: Path, sounds: Path, no_ffmpeg: None
) -> None:
    src = tmp_path / f"x.{fmt}"
    src.write_bytes(head + bytes(200))
    with pytest.raises(
        PromptImportError, match=f"^ffmpeg is needed to read {fmt}: none is on PATH and imageio-ffmpeg's is missing"
    ):
        import_recording(src, "acme", "welcome", "de", sounds_dir=sounds)
    assert not sounds.exists()


def test_the_bundled_ffmpeg_alone_imports_mp3(
    recording: Path, tmp_path: Path, sounds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh machine: no ffmpeg on PATH (and no ffprobe anywhere), only the wheel's."""
    mp3 = _mp3(recording, tmp_path / "welcome.mp3")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    found = _ffmpeg.find()
    assert found is not None and "imageio_ffmpeg" in found
    import_recording(mp3, "acme", "welcome", "de", sounds_dir=sounds)
    _assert_telephony_wav(sounds / "de" / "ivr" / "custom" / "acme" / "welcome.wav", 1.45, 1.65)


def _fake_ffmpeg(bin_dir: Path, body: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``ffmpeg`` first on PATH: a shell script (a real process the importer runs)."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "ffmpeg"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return script


def test_an_ffmpeg_on_path_is_preferred(
    recording: Path, tmp_path: Path, sounds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import imageio_ffmpeg  # type: ignore[import-untyped]  # ships no type hints

    mp3 = _mp3(recording, tmp_path / "welcome.mp3")
    log = tmp_path / "ran.log"
    bundled = imageio_ffmpeg.get_ffmpeg_exe()
    _fake_ffmpeg(tmp_path / "bin", f'echo "$@" >> "{log}"\nexec "{bundled}" "$@"', monkeypatch)
    import_recording(mp3, "acme", "welcome", "de", sounds_dir=sounds)
    ran = log.read_text().splitlines()
    assert len(ran) == 1 and "-f mp3 -i pipe:0" in ran[0] and "-protocol_whitelist pipe" in ran[0]
    _assert_telephony_wav(sounds / "de" / "ivr" / "custom" / "acme" / "welcome.wav", 1.45, 1.65)


def test_an_mp3_with_a_cover_picture(recording: Path, tmp_path: Path, sounds: Path) -> None:
    cover = tmp_path / "cover.png"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "color=c=red:s=16x16",
                    "-frames:v", "1", str(cover)], check=True)
    mp3 = tmp_path / "tagged.mp3"
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(recording), "-i", str(cover),
                    "-map", "0:a", "-map", "1:v", "-c:a", "libmp3lame", "-c:v", "png",
                    "-disposition:v", "attached_pic", "-id3v2_version", "3", str(mp3)], check=True)
    import_recording(mp3, "acme", "welcome", "de", sounds_dir=sounds)
    _assert_telephony_wav(sounds / "de" / "ivr" / "custom" / "acme" / "welcome.wav", 1.45, 1.65)


@pytest.mark.parametrize(("name", "data", "fmt"), [
    ("fake.mp3", b"this is not audio, just text pretending to be\n", "an mp3"),
    ("tagged.mp3", b"ID3\x03\x00" + bytes(300), "an mp3"),        # an ID3 header, then nothing
    ("fake.ogg", b"this is not audio either\n", "an ogg"),
    ("fake.wav", b"\x1b[2J not a RIFF header at all", "a wav"),
    ("broken.ogg", b"OggS\x00\x02" + bytes(100), "an ogg"),
])
def test_not_audio_says_what_ffmpeg_said(
    name: str, data: bytes, fmt: str, tmp_path: Path, sounds: Path
) -> None:
    src = tmp_path / name
    src.write_bytes(data)
    with pytest.raises(PromptImportError) as caught:
        import_recording(src, "acme", "welcome", "de", sounds_dir=sounds)
    message = str(caught.value)
    assert message.startswith(f"{src}: not {fmt} / cannot decode: ")
    reason = message.split(" / cannot decode: ", 1)[1]
    assert reason and "\n" not in reason and "@ 0x" not in reason  # one line, no ffmpeg addresses
    assert message.isprintable()
    assert not sounds.exists()


def test_ffmpeg_messages_are_made_printable(
    recording: Path, tmp_path: Path, sounds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ffmpeg may quote bytes of the file; an ESC from it never reaches the terminal."""
    _fake_ffmpeg(tmp_path / "bin", "cat >/dev/null\n"
                 "printf '[mp3 @ 0x55d0c0ffee00] bad frame \\033]0;owned\\007 here\\n' >&2\n"
                 "printf 'second line\\n' >&2\nexit 1", monkeypatch)
    src = tmp_path / "x.mp3"
    src.write_bytes(b"ID3\x03\x00" + bytes(100))
    with pytest.raises(PromptImportError) as caught:
        import_recording(src, "acme", "welcome", "de", sounds_dir=sounds)
    assert str(caught.value) == f"{src}: not an mp3 / cannot decode: bad frame \\x1b]0;owned\\x07 here"


def test_an_ffmpeg_that_hangs_is_killed(
    tmp_path: Path, sounds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "ffmpeg.pid"
    _fake_ffmpeg(tmp_path / "bin", f'echo $$ > "{pid_file}"\nexec sleep 600', monkeypatch)
    monkeypatch.setattr(importer_module, "FFMPEG_TIMEOUT_S", 1.0)
    src = tmp_path / "x.mp3"
    src.write_bytes(b"ID3\x03\x00" + bytes(100))
    with pytest.raises(PromptImportError, match=r": ffmpeg did not finish decoding it within 1 s$"):
        import_recording(src, "acme", "welcome", "de", sounds_dir=sounds)
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(int(pid_file.read_text()), 0)


def test_ffmpeg_output_is_capped(
    tmp_path: Path, sounds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ffmpeg that would write forever (ignoring -t) is read up to the cap and killed."""
    _fake_ffmpeg(tmp_path / "bin", "exec cat /dev/zero", monkeypatch)
    monkeypatch.setattr(importer_module, "MAX_RECORDING_SECONDS", 1)
    src = tmp_path / "x.mp3"
    src.write_bytes(b"ID3\x03\x00" + bytes(100))
    with pytest.raises(PromptImportError, match=r"lasts more than 1 s; a prompt may last 1 s at most"):
        import_recording(src, "acme", "welcome", "de", sounds_dir=sounds)


def test_an_ffmpeg_that_cannot_start(
    tmp_path: Path, sounds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "bin" / "ffmpeg"
    script.parent.mkdir()
    script.write_text("#!/no/such/interpreter\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(script.parent))
    src = tmp_path / "x.ogg"
    src.write_bytes(b"OggS\x00\x02" + bytes(100))
    with pytest.raises(PromptImportError, match=f"^cannot run {script}: No such file or directory$"):
        import_recording(src, "acme", "welcome", "de", sounds_dir=sounds)


def test_a_long_mp3_is_refused(recording: Path, tmp_path: Path, sounds: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    mp3 = _mp3(recording, tmp_path / "welcome.mp3")  # 2.5 s
    monkeypatch.setattr(importer_module, "MAX_RECORDING_SECONDS", 1)
    with pytest.raises(PromptImportError, match=r"lasts more than 1 s; a prompt may last 1 s at most"):
        import_recording(mp3, "acme", "welcome", "de", sounds_dir=sounds)
    assert not sounds.exists()


@pytest.mark.parametrize(
    "project",
    ["../x", "..", ".", "a/b", "a\\b", "/etc", "Acme", "", "a b", "a\x00", "-rf", "x" * 65, "ä"],
)
def test_bad_project_names_are_refused(
    project: str, recording: Path, sounds: Path, tmp_path: Path
) -> None:
    with pytest.raises(PromptImportError, match="invalid project name"):
        import_recording(recording, project, "welcome", "de", sounds_dir=sounds)
    assert custom_sound(project, "welcome", "de", sounds) is None
    assert not sounds.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["welcome.wav"]


@pytest.mark.parametrize("prompt", ["../welcome", "welcome.wav", "WELCOME", "nope", "", "custom"])
def test_unknown_prompts_are_refused(prompt: str, recording: Path, sounds: Path) -> None:
    with pytest.raises(PromptImportError, match="unknown prompt"):
        import_recording(recording, "acme", prompt, "de", sounds_dir=sounds)
    with pytest.raises(ValueError):
        custom_sound("acme", prompt, "de", sounds)
    assert not sounds.exists()


def test_unknown_language_is_refused(recording: Path, sounds: Path) -> None:
    with pytest.raises(PromptImportError, match="unsupported language"):
        import_recording(recording, "acme", "welcome", "../de", sounds_dir=sounds)
    with pytest.raises(ValueError):
        custom_sound("acme", "welcome", "fr", sounds)


def test_names_are_valid_at_the_limits(recording: Path, sounds: Path) -> None:
    for project in ("a", "0", "_x", "a-b_c-9", "x" * 64):
        assert import_recording(recording, project, "busy", "en", sounds_dir=sounds)


def test_missing_file(tmp_path: Path, sounds: Path) -> None:
    with pytest.raises(PromptImportError, match="cannot read"):
        import_recording(tmp_path / "nope.wav", "acme", "welcome", "de", sounds_dir=sounds)


def test_directory_is_unreadable(tmp_path: Path, sounds: Path) -> None:
    with pytest.raises(PromptImportError, match="cannot read"):
        import_recording(tmp_path, "acme", "welcome", "de", sounds_dir=sounds)


@pytest.mark.parametrize("suffix", [".txt", "", ".m4a"])
def test_unknown_format(suffix: str, tmp_path: Path, sounds: Path) -> None:
    src = tmp_path / f"notes{suffix}"
    src.write_text("this is not audio, just text pretending to be\n")
    with pytest.raises(PromptImportError, match="unknown audio format.*mp3, wav or ogg"):
        import_recording(src, "acme", "welcome", "de", sounds_dir=sounds)


def test_empty_file(tmp_path: Path, sounds: Path) -> None:
    src = tmp_path / "empty.wav"
    src.write_bytes(b"")
    with pytest.raises(PromptImportError, match="empty.wav is empty$"):
        import_recording(src, "acme", "welcome", "de", sounds_dir=sounds)


def test_corrupt_wav(tmp_path: Path, sounds: Path) -> None:
    src = tmp_path / "broken.wav"
    src.write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunkjunkjunkjunk")
    with pytest.raises(PromptImportError):
        import_recording(src, "acme", "welcome", "de", sounds_dir=sounds)
    assert not sounds.exists()


def test_silent_recording(tmp_path: Path, sounds: Path) -> None:
    src = write_wav(tmp_path / "silence.wav", tone(440, 8000, 1.0, amplitude=0), 8000)
    with pytest.raises(PromptImportError, match="silent"):
        import_recording(src, "acme", "welcome", "de", sounds_dir=sounds)


def test_too_long_recording(recording: Path, sounds: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer_module, "MAX_RECORDING_SECONDS", 1)
    with pytest.raises(PromptImportError, match="1 s at most"):
        import_recording(recording, "acme", "welcome", "de", sounds_dir=sounds)
