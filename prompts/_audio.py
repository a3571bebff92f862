"""Turn any decoded audio into a telephony prompt: 8 kHz, mono, 16-bit PCM WAV.

How this works, in order:

1. mono, 16-bit (pydub: ``set_channels``, ``set_sample_width``);
2. resample to 8 kHz with a windowed-sinc low-pass filter (``resample``).
   pydub's ``set_frame_rate`` uses ``audioop.ratecv``, which interpolates
   without filtering: the sibilants espeak-ng puts above 4 kHz would fold back
   into the band as hiss;
3. trim leading and trailing silence, keeping a few milliseconds so soft
   onsets ("f", "h") survive;
4. normalise to ``TARGET_DBFS`` RMS, but never let the peak pass
   ``PEAK_CEILING_DBFS``;
5. write a canonical WAV with the stdlib ``wave`` module: same samples, same
   bytes (the build is reproducible byte for byte).

pydub is imported lazily and with its import-time warnings silenced: it warns
(``RuntimeWarning``) when ffmpeg is absent, which is fine for WAV, and imports
the deprecated ``audioop`` (``DeprecationWarning`` on 3.11/3.12).
"""

from __future__ import annotations

import array
import contextlib
import functools
import io
import math
import os
import sys
import tempfile
import wave
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any, cast

__all__ = [
    "CHANNELS",
    "PEAK_CEILING_DBFS",
    "SAMPLE_RATE",
    "SAMPLE_WIDTH",
    "TARGET_DBFS",
    "SilentAudio",
    "encode_wav",
    "pydub",
    "resample",
    "settings",
    "to_telephony",
    "write_atomically",
]

SAMPLE_RATE = 8000
SAMPLE_WIDTH = 2  # bytes: 16-bit signed PCM
CHANNELS = 1
#: RMS level of a finished prompt. Near Asterisk's own core sounds; loud
#: enough over a phone line without clipping speech peaks.
TARGET_DBFS = -20.0
PEAK_CEILING_DBFS = -1.0
#: Silence below (peak - this) counts as silence when trimming.
_SILENCE_BELOW_PEAK_DB = 40.0
_SILENCE_CHUNK_MS = 5
_KEEP_LEADING_MS = 20
_KEEP_TRAILING_MS = 40

# Resampling filter: pass up to 45 % of the lower rate (3.6 kHz at 8 kHz out,
# above the 3.4 kHz telephone band), reach the stop band over the next 10 %,
# with a Kaiser window for about 60 dB of attenuation there.
_PASS_FRACTION = 0.45
_TRANSITION_FRACTION = 0.10
_STOPBAND_DB = 60.0


def settings() -> dict[str, float]:
    """Return every constant that shapes the output, for the build record."""
    return {
        "sample_rate": SAMPLE_RATE,
        "sample_width": SAMPLE_WIDTH,
        "channels": CHANNELS,
        "target_dbfs": TARGET_DBFS,
        "peak_ceiling_dbfs": PEAK_CEILING_DBFS,
        "silence_below_peak_db": _SILENCE_BELOW_PEAK_DB,
        "silence_chunk_ms": _SILENCE_CHUNK_MS,
        "keep_leading_ms": _KEEP_LEADING_MS,
        "keep_trailing_ms": _KEEP_TRAILING_MS,
        "filter_pass_fraction": _PASS_FRACTION,
        "filter_transition_fraction": _TRANSITION_FRACTION,
        "filter_stopband_db": _STOPBAND_DB,
    }


class SilentAudio(ValueError):
    """The audio holds nothing above the noise floor."""


@functools.cache
def pydub() -> ModuleType:
    """Return the pydub module, imported without its import-time warnings."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "Couldn't find ffmpeg or avconv"
        warnings.simplefilter("ignore", DeprecationWarning)  # audioop, PEP 594
        import pydub as module  # type: ignore[import-untyped]  # pydub ships no type hints
        import pydub.silence  # type: ignore[import-untyped]  # used as module.silence
    return cast(ModuleType, module)


def _bessel_i0(x: float) -> float:
    """Modified Bessel function of the first kind, order 0 (power series)."""
    total = term = 1.0
    k = 0
    while term > 1e-12 * total:
        k += 1
        term *= (x / (2 * k)) ** 2
        total += term
    return total


@functools.cache
def _filter_bank(
    src_rate: int, dst_rate: int
) -> tuple[int, int, int, tuple[tuple[float, ...], ...]]:
    """Return (up, down, half_width, taps per phase) for src_rate -> dst_rate.

    Output sample n sits at input time n * down / up; its phase is
    (n * down) mod up, and taps[phase][j] weighs input sample
    floor(time) - half_width + 1 + j.
    """
    ratio = Fraction(dst_rate, src_rate)
    up, down = ratio.numerator, ratio.denominator
    low = min(src_rate, dst_rate)
    cutoff = _PASS_FRACTION * low / src_rate  # cycles per input sample
    transition = _TRANSITION_FRACTION * low / src_rate
    # Kaiser's estimates (Oppenheim & Schafer, 7.6): length and beta.
    length = (_STOPBAND_DB - 8.0) / (2.285 * 2.0 * math.pi * transition)
    half_width = max(2, math.ceil(length / 2))
    beta = 0.1102 * (_STOPBAND_DB - 8.7)
    i0_beta = _bessel_i0(beta)
    phases: list[tuple[float, ...]] = []
    for phase in range(up):
        frac = phase / up
        taps = []
        for j in range(2 * half_width):
            t = frac + half_width - 1 - j  # distance from output time to input sample
            x = 2.0 * cutoff * t
            sinc = 1.0 if x == 0 else math.sin(math.pi * x) / (math.pi * x)
            r = t / half_width
            window = _bessel_i0(beta * math.sqrt(1.0 - r * r)) / i0_beta if abs(r) < 1 else 0.0
            taps.append(sinc * window)
        total = sum(taps)
        phases.append(tuple(tap / total for tap in taps))  # unity gain at DC, every phase
    return up, down, half_width, tuple(phases)


def resample(
    samples: array.array[int], src_rate: int, dst_rate: int = SAMPLE_RATE
) -> array.array[int]:
    """Return 16-bit ``samples`` at ``src_rate`` resampled to ``dst_rate``.

    Band-limited (windowed sinc), so nothing above the new Nyquist frequency
    folds back. Pure Python with the heavy loop in ``sum(map(...))``: about
    0.1 s per second of 22-48 kHz input.
    """
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {src_rate} -> {dst_rate}")
    if src_rate == dst_rate:
        return array.array("h", samples)
    up, down, half, phases = _filter_bank(src_rate, dst_rate)
    padded = [0.0] * half + [float(s) for s in samples] + [0.0] * half
    out_len = (len(samples) * up) // down
    out = array.array("h", bytes(2 * out_len))
    mul = float.__mul__
    for n in range(out_len):
        base, phase = divmod(n * down, up)
        # input samples base-half+1 .. base+half, shifted by the padding
        window = padded[base + 1 : base + 1 + 2 * half]
        value = round(sum(map(mul, phases[phase], window)))
        out[n] = max(-32768, min(32767, value))
    return out


def _samples(segment: Any) -> array.array[int]:
    data = array.array("h", segment.raw_data)
    if sys.byteorder == "big":
        data.byteswap()  # WAV data is little-endian
    return data


def _segment(samples: array.array[int], rate: int) -> Any:
    data = array.array("h", samples)
    if sys.byteorder == "big":
        data.byteswap()
    return pydub().AudioSegment(
        data=data.tobytes(), sample_width=SAMPLE_WIDTH, frame_rate=rate, channels=CHANNELS
    )


def to_telephony(segment: Any) -> Any:
    """Return the pydub ``segment`` as a finished prompt (see the module doc).

    Raises ``SilentAudio`` if nothing is left after trimming.
    """
    silence = pydub().silence
    if segment.channels != CHANNELS:
        segment = segment.set_channels(CHANNELS)
    if segment.sample_width != SAMPLE_WIDTH:
        segment = segment.set_sample_width(SAMPLE_WIDTH)
    segment = _segment(resample(_samples(segment), segment.frame_rate), SAMPLE_RATE)

    if len(segment) == 0 or segment.rms == 0:
        raise SilentAudio("the audio is silent")
    threshold = segment.max_dBFS - _SILENCE_BELOW_PEAK_DB
    start = silence.detect_leading_silence(segment, threshold, _SILENCE_CHUNK_MS)
    end = len(segment) - silence.detect_leading_silence(
        segment.reverse(), threshold, _SILENCE_CHUNK_MS
    )
    segment = segment[max(0, start - _KEEP_LEADING_MS) : min(len(segment), end + _KEEP_TRAILING_MS)]
    if len(segment) == 0 or segment.rms == 0:
        raise SilentAudio("the audio is silent")

    gain = TARGET_DBFS - segment.dBFS
    gain = min(gain, PEAK_CEILING_DBFS - segment.max_dBFS)
    return segment.apply_gain(gain)


def encode_wav(segment: Any) -> bytes:
    """Return a finished prompt as canonical WAV bytes (44-byte header, PCM)."""
    if (segment.frame_rate, segment.channels, segment.sample_width) != (
        SAMPLE_RATE,
        CHANNELS,
        SAMPLE_WIDTH,
    ):
        raise ValueError("encode_wav takes the result of to_telephony")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(CHANNELS)
        out.setsampwidth(SAMPLE_WIDTH)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(segment.raw_data)
    return buffer.getvalue()


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # only still there if something failed
