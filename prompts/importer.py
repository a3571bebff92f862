"""Custom recordings: a line operator's own voice for a prompt of one project.

``import_recording`` reads an mp3, wav or ogg file, makes it a telephony
prompt exactly as the builder does (8 kHz mono 16-bit, trimmed, normalised;
see _audio.py) and stores it as

    <sounds_dir>/<lang>/ivr/custom/<project>/<prompt>.wav

played as the sound ``ivr/custom/<project>/<prompt>``. ``custom_sound`` tells
the engine whether one exists, so a flow can prefer it to the built prompt.

WAV in 8-, 16-, 24- or 32-bit integer PCM is read by pydub without any
external tool; mp3, ogg and other WAV encodings (float, A-law) are decoded by
ffmpeg: the system's, else the one the imageio-ffmpeg wheel brings (_ffmpeg.py).

The format is recognised from the file's first bytes, or else from its suffix
(a broken mp3 is then reported with ffmpeg's own first error line).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from . import _audio, _ffmpeg
from ._catalogue import LANGUAGES, SOUNDS_DIR, Prompt, check_language
from ._errors import PromptImportError

__all__ = ["FFMPEG_TIMEOUT_S", "MAX_RECORDING_SECONDS", "custom_sound", "import_recording"]

#: Longer input is refused: a prompt is seconds long, and resampling an hour
#: of audio in pure Python would take minutes.
MAX_RECORDING_SECONDS = 120
#: ffmpeg decodes two minutes of mp3 in well under a second; this is for a machine
#: under load, or an ffmpeg that hangs on a file made to hang it.
FFMPEG_TIMEOUT_S = 60.0

# A single path component of safe characters: no "/", no "..", no leading
# "-" (would read as an option to shell tools), at most 64 characters.
_NAME = re.compile(r"[a-z0-9_][a-z0-9_-]{0,63}")
_CUSTOM = "ivr/custom"
_MAX_FILE_BYTES = 200 * 1024 * 1024
_BY_SUFFIX = {".mp3": "mp3", ".wav": "wav", ".wave": "wav", ".ogg": "ogg", ".oga": "ogg"}


def _valid_name(name: object) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def _prompt_id(prompt: str) -> str:
    try:
        return Prompt(prompt).value
    except ValueError:
        raise PromptImportError(
            f"unknown prompt {prompt!r}: one of {', '.join(p.value for p in Prompt)}"
        ) from None


def _sniff(head: bytes) -> str | None:
    """Return "wav", "mp3" or "ogg" from a file's first bytes, or None."""
    if head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"ID3":
        return "mp3"
    # An MPEG audio frame header: 11 sync bits, layer III (bits 01 in 2-1).
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06 == 0x02:
        return "mp3"
    return None


def _article(fmt: str) -> str:
    return {"mp3": "an", "ogg": "an"}.get(fmt, "a")  # as spoken: "an em-pee-three", "a wave"


def _decode(src: Path, data: bytes, fmt: str) -> Any:
    """Return ``data`` (read from ``src``, taken for ``fmt``) as a pydub segment.

    Raises ``PromptImportError`` when no ffmpeg is there or ffmpeg cannot decode it."""
    pydub = _audio.pydub()
    if fmt == "wav" and data[:4] in (b"RIFF", b"RIFX"):
        try:
            return pydub.AudioSegment(data=data)  # integer PCM, no ffmpeg needed
        except (pydub.exceptions.CouldntDecodeError, ValueError, IndexError, TypeError):
            pass  # float, A-law, …: ffmpeg may still read it
    ffmpeg = _ffmpeg.find()
    if ffmpeg is None:
        what = "this kind of wav (not integer PCM)" if fmt == "wav" else fmt
        raise PromptImportError(f"ffmpeg is needed to read {what}: none is on PATH and imageio-ffmpeg's"
                                " is missing (pip install imageio-ffmpeg, or apt-get install ffmpeg)")
    try:
        pcm = _ffmpeg.decode(ffmpeg, data, fmt, max_seconds=MAX_RECORDING_SECONDS, timeout_s=FFMPEG_TIMEOUT_S)
    except _ffmpeg.DecodeError as exc:
        raise PromptImportError(f"{src}: not {_article(fmt)} {fmt} / cannot decode: {exc}") from exc
    except _ffmpeg.DecodeTimeout as exc:
        raise PromptImportError(f"{src}: ffmpeg did not finish decoding it within {FFMPEG_TIMEOUT_S:g} s") from exc
    except OSError as exc:
        raise PromptImportError(f"cannot run {ffmpeg}: {exc.strerror or exc}") from exc
    return pydub.AudioSegment(data=pcm, sample_width=2, frame_rate=_ffmpeg.RATE, channels=1)


def import_recording(
    src: Path,
    project: str,
    prompt: str,
    language: str,
    sounds_dir: Path = SOUNDS_DIR,
    *,
    replace: bool = True,
) -> str:
    """Store ``src`` as the custom recording of ``prompt`` for ``project``.

    Returns the sound name, ``"ivr/custom/<project>/<prompt>"``; an earlier
    recording is replaced only with ``replace``. Raises ``PromptImportError`` for an invalid
    project name, an unknown prompt or language, an unreadable, undecodable,
    silent or too long file, a file ffmpeg cannot decode (its first error line
    in the message), or a missing ffmpeg (for mp3, ogg and non-PCM wav).
    """
    if not _valid_name(project):
        raise PromptImportError(
            f"invalid project name {project!r}: use a-z, 0-9, '_' and '-' (at most 64)"
        )
    stem = _prompt_id(prompt)
    if language not in LANGUAGES:
        raise PromptImportError(f"unsupported language {language!r}: one of {', '.join(LANGUAGES)}")

    name = f"{_CUSTOM}/{project}/{stem}"
    target = Path(sounds_dir) / language / f"{name}.wav"
    if not replace and target.exists():
        raise PromptImportError(f"{project} has a recording of {stem} in {language} already;"
                                " add --yes to replace it")
    src = Path(src)
    try:
        if src.stat().st_size > _MAX_FILE_BYTES:
            raise PromptImportError(f"{src} is over {_MAX_FILE_BYTES // 2**20} MiB")
        data = src.read_bytes()
    except OSError as exc:
        raise PromptImportError(f"cannot read {src}: {exc.strerror or exc}") from exc
    if not data:
        raise PromptImportError(f"{src} is empty")
    fmt = _sniff(data[:16]) or _BY_SUFFIX.get(src.suffix.lower())
    if fmt is None:
        raise PromptImportError(
            f"{src}: unknown audio format (suffix {src.suffix or 'none'}); use mp3, wav or ogg"
        )

    segment = _decode(src, data, fmt)
    if segment.duration_seconds > MAX_RECORDING_SECONDS:
        # ffmpeg stops one second past the limit: "more than", not the whole length.
        raise PromptImportError(
            f"{src} lasts more than {MAX_RECORDING_SECONDS} s; a prompt may last"
            f" {MAX_RECORDING_SECONDS} s at most"
        )
    try:
        wav = _audio.encode_wav(_audio.to_telephony(segment))
    except _audio.SilentAudio:
        raise PromptImportError(f"{src} is silent") from None

    _audio.write_atomically(target, wav)
    return name


def custom_sound(
    project: str, prompt: str, language: str, sounds_dir: Path = SOUNDS_DIR
) -> str | None:
    """Return the sound name of ``project``'s recording of ``prompt``, or None.

    None also for a project name that ``import_recording`` would refuse: no
    such recording can exist, and the name never reaches the file system.
    Raises ``ValueError`` for an unknown prompt or language (a bug in the
    caller, not a missing file).
    """
    stem = Prompt(prompt).value
    check_language(language)
    if not _valid_name(project):
        return None
    name = f"{_CUSTOM}/{project}/{stem}"
    return name if (Path(sounds_dir) / language / f"{name}.wav").is_file() else None
