"""Helpers for the prompts tests: synthetic audio, written with the stdlib only."""

from __future__ import annotations

import array
import math
import shutil
import sys
import wave
from pathlib import Path

import pytest

HAVE_FFMPEG = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None
needs_ffmpeg = pytest.mark.skipif(
    not HAVE_FFMPEG, reason="ffmpeg/ffprobe not installed (apt-get install ffmpeg)"
)


def tone(
    frequency: float,
    rate: int,
    seconds: float,
    amplitude: int = 10000,
    pad_seconds: float = 0.0,
) -> array.array[int]:
    """Return a sine tone as 16-bit samples, with ``pad_seconds`` of silence each side."""
    pad = [0] * int(rate * pad_seconds)
    body = [
        int(amplitude * math.sin(2 * math.pi * frequency * i / rate))
        for i in range(int(rate * seconds))
    ]
    return array.array("h", pad + body + pad)


def write_wav(
    path: Path,
    samples: array.array[int],
    rate: int,
    channels: int = 1,
) -> Path:
    """Write 16-bit ``samples`` (mono, duplicated to ``channels``) as a WAV file."""
    frames = array.array("h", (s for s in samples for _ in range(channels)))
    if sys.byteorder == "big":
        frames.byteswap()
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(frames.tobytes())
    return path


def rms(samples: array.array[int]) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0
