"""Helpers for the prompts tests: synthetic audio, written with the stdlib only."""

from __future__ import annotations

import array
import math
import sys
import wave
from pathlib import Path

import pytest

from prompts import _ffmpeg


def ffmpeg_exe() -> str:
    """The ffmpeg the importer uses (the system's, else imageio-ffmpeg's). Its absence
    fails the test: imageio-ffmpeg is a dependency, so after ``make setup`` it is there,
    and mp3 import must never go untested for want of a binary."""
    exe = _ffmpeg.find()
    if exe is None:
        pytest.fail("no ffmpeg: neither on PATH nor imageio-ffmpeg's (make setup installs imageio-ffmpeg)")
    return exe


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
