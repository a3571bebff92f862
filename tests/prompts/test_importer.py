"""Custom recordings: import, lookup, validation."""

from __future__ import annotations

import shutil
import struct
import subprocess
import wave
from pathlib import Path

import pytest

from prompts import Prompt, PromptImportError, custom_sound, import_recording
from prompts import importer as importer_module
from tests.prompts._helpers import needs_ffmpeg, tone, write_wav


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
def no_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)


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
        PromptImportError, match=r"ffmpeg is needed to read .*wav.*apt-get install ffmpeg"
    ):
        import_recording(src, "p1", "busy", "de", sounds_dir=sounds)


@needs_ffmpeg
def test_float_wav_with_ffmpeg(tmp_path: Path, sounds: Path) -> None:
    import_recording(_float_wav(tmp_path / "float.wav"), "p1", "busy", "de", sounds_dir=sounds)
    _assert_telephony_wav(sounds / "de" / "ivr" / "custom" / "p1" / "busy.wav", 0.9, 1.1)


def _encode(src: Path, dst: Path, *codec: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-i", str(src), *codec, str(dst)], check=True
    )
    return dst


@needs_ffmpeg
def test_mp3_round_trip(recording: Path, tmp_path: Path, sounds: Path) -> None:
    mp3 = _encode(recording, tmp_path / "welcome.mp3", "-codec:a", "libmp3lame", "-b:a", "64k")
    name = import_recording(mp3, "acme", "welcome", "en", sounds_dir=sounds)
    assert name == "ivr/custom/acme/welcome"
    _assert_telephony_wav(sounds / "en" / "ivr" / "custom" / "acme" / "welcome.wav", 1.45, 1.65)


@needs_ffmpeg
def test_ogg_round_trip(recording: Path, tmp_path: Path, sounds: Path) -> None:
    ogg = _encode(recording, tmp_path / "welcome.ogg", "-codec:a", "libvorbis")
    import_recording(ogg, "acme", "welcome", "de", sounds_dir=sounds)
    _assert_telephony_wav(sounds / "de" / "ivr" / "custom" / "acme" / "welcome.wav", 1.45, 1.65)


@pytest.mark.parametrize(("fmt", "head"), [("mp3", b"ID3\x03\x00"), ("ogg", b"OggS\x00\x02")])
def test_mp3_and_ogg_without_ffmpeg_say_so(
    fmt: str, head: bytes, tmp_path: Path, sounds: Path, no_ffmpeg: None
) -> None:
    src = tmp_path / f"x.{fmt}"
    src.write_bytes(head + bytes(200))
    with pytest.raises(
        PromptImportError, match=f"ffmpeg is needed to read {fmt}: apt-get install ffmpeg"
    ):
        import_recording(src, "acme", "welcome", "de", sounds_dir=sounds)


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


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".txt", ""])
def test_unknown_format(suffix: str, tmp_path: Path, sounds: Path) -> None:
    src = tmp_path / f"notes{suffix}"
    src.write_text("this is not audio, just text pretending to be\n")
    with pytest.raises(PromptImportError, match="unknown audio format.*mp3, wav or ogg"):
        import_recording(src, "acme", "welcome", "de", sounds_dir=sounds)


def test_empty_file(tmp_path: Path, sounds: Path) -> None:
    src = tmp_path / "empty.wav"
    src.write_bytes(b"")
    with pytest.raises(PromptImportError, match="unknown audio format"):
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
