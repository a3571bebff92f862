"""ffmpeg, for the recordings pydub cannot read alone: mp3, ogg, float or A-law WAV.

Which ffmpeg (``find``): the system's when one is on PATH (the distribution's build,
with its security updates), else the static build the imageio-ffmpeg wheel ships, a
dependency of this package: ``ivr prompts import greeting.mp3`` works after
``pip install`` alone, on a machine without ffmpeg.

How it decodes (``decode``): pydub's ``from_file`` would run ffprobe first (its
``mediainfo``) to learn the format, and the wheel has no ffprobe. So we run ffmpeg
ourselves, without a shell, and ask it for what the prompt needs in the end — raw
16-bit little-endian mono PCM at 8 kHz on stdout — from which the caller builds the
pydub segment. ffmpeg's resampler is band-limited (a windowed sinc, as _audio's), so
nothing above 4 kHz folds back.

What it may touch: the bytes come on stdin (``pipe:0``) with the demuxer forced to
the format the importer recognised (``-f mp3``), and ``-protocol_whitelist pipe``:
a file that is really a playlist or a concat script cannot make ffmpeg open another
file or a URL. Only the first audio stream is decoded (``-map 0:a:0``: an mp3's cover
picture is ignored). The output stops after ``max_seconds`` + 1 s of audio (``-t``),
we stop reading at that size whatever ffmpeg does, and the whole run has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator

__all__ = ["RATE", "DecodeError", "DecodeTimeout", "decode", "find"]

RATE = 8000  # the telephony rate (_audio.SAMPLE_RATE): ffmpeg resamples once
_BYTES_PER_SECOND = RATE * 2  # 16-bit mono
#: How much of ffmpeg's stderr is read to find its first error line.
_STDERR_BYTES = 8192
#: ffmpeg prefixes messages with the component and its address: "[in#0 @ 0x55e8…] ".
_COMPONENT = re.compile(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*")
_MAX_REASON = 200


class DecodeError(Exception):
    """ffmpeg ran and did not decode the input; the message is its first error line."""


class DecodeTimeout(Exception):
    """ffmpeg did not finish before the deadline (it was killed)."""


def find() -> str | None:
    """Return the ffmpeg to run: the one on PATH, else imageio-ffmpeg's, else None."""
    system = shutil.which("ffmpeg")
    if system is not None:
        return system
    try:
        import imageio_ffmpeg  # type: ignore[import-untyped]  # ships no type hints
    except ImportError:
        return None
    try:
        # Its own order: IMAGEIO_FFMPEG_EXE if set, its bundled binary (checked by running
        # it with -version, once per process), conda's, the system's (not there: see above).
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError:  # "No ffmpeg exe could be found": the binary is missing or broken
        return None


def printable(text: str) -> str:
    """``text`` with non-printable characters (ESC, BEL, C1 controls) as visible escapes.

    The same rule as ivr/_safe.py's (this layer may not import ivr): ffmpeg's messages
    can quote bytes of the file, and the file is whatever the operator was sent.
    """
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _reason(stderr: bytes, returncode: int) -> str:
    for raw in stderr.decode("utf-8", "replace").splitlines():
        line = _COMPONENT.sub("", raw).strip()
        if line:
            line = printable(line)
            return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 1] + "…"
    if returncode < 0:
        return f"ffmpeg was killed by signal {-returncode}"
    return f"ffmpeg exited with status {returncode} and no message"


def command(ffmpeg: str, fmt: str, max_seconds: int) -> list[str]:
    """Return the argument vector ``decode`` runs (see the module doc)."""
    return [ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error",
            "-protocol_whitelist", "pipe", "-f", fmt, "-i", "pipe:0",
            "-map", "0:a:0", "-t", str(max_seconds + 1),
            "-ac", "1", "-ar", str(RATE), "-c:a", "pcm_s16le", "-f", "s16le", "pipe:1"]


@contextlib.contextmanager
def _killed_at_exit(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def decode(ffmpeg: str, data: bytes, fmt: str, *, max_seconds: int, timeout_s: float) -> bytes:
    """Return ``data`` (a whole file in format ``fmt``) decoded by ``ffmpeg`` as raw
    16-bit little-endian mono PCM at ``RATE``: at most ``max_seconds`` + 1 s of it, so a
    result longer than ``max_seconds`` means the recording is too long.

    Raises ``DecodeError`` with ffmpeg's first error line (made printable) when it fails
    or yields no audio, ``DecodeTimeout`` when it has not finished after ``timeout_s``
    (it is killed), ``OSError`` when it cannot be started.
    """
    cap = (max_seconds + 1) * _BYTES_PER_SECOND
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stderr:
        # From a file rather than a pipe: nothing to feed while we read, ffmpeg reads at its pace.
        stdin.write(data)
        stdin.seek(0)
        proc = subprocess.Popen(command(ffmpeg, fmt, max_seconds), stdin=stdin, stdout=subprocess.PIPE,
                                stderr=stderr, shell=False)
        with _killed_at_exit(proc):
            assert proc.stdout is not None  # stdout=PIPE
            deadline = time.monotonic() + timeout_s
            pcm, complete = _read_capped(proc, cap, deadline)
            if complete:  # stdout closed: ffmpeg is exiting
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    raise DecodeTimeout() from None
        if complete and proc.returncode != 0:
            stderr.seek(0)
            raise DecodeError(_reason(stderr.read(_STDERR_BYTES), proc.returncode))
    if not pcm:
        raise DecodeError("no audio in it")
    return pcm[: len(pcm) - len(pcm) % 2]  # whole samples only


def _read_capped(proc: subprocess.Popen[bytes], cap: int, deadline: float) -> tuple[bytes, bool]:
    """Read ``proc``'s stdout until its end (returns it, True) or ``cap`` bytes (the first
    ``cap``, False: more would only say "too long"). Raises ``DecodeTimeout`` at ``deadline``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    chunks: list[bytes] = []
    size = 0
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while size <= cap:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DecodeTimeout()
            if not selector.select(left):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
            size += len(chunk)
    return b"".join(chunks)[:cap], False
