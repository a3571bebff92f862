"""The conversion every prompt goes through: resampling, trimming, normalising."""

from __future__ import annotations

import array
import io
import math
import wave
from pathlib import Path

import pytest

from prompts import _audio
from tests.prompts._helpers import rms, tone


def _level_db(frequency: float, src_rate: int) -> float:
    out = _audio.resample(tone(frequency, src_rate, 0.5), src_rate)
    middle = out[len(out) // 5 : -len(out) // 5]  # away from the filter's edges
    return 20 * math.log10(max(rms(middle), 1e-9) / (10000 / math.sqrt(2)))


@pytest.mark.parametrize("src_rate", [22050, 44100, 48000, 16000])
def test_resample_keeps_the_telephone_band(src_rate: int) -> None:
    for frequency in (300, 1000, 3000):
        assert abs(_level_db(frequency, src_rate)) < 0.5


@pytest.mark.parametrize("src_rate", [22050, 44100, 48000])
def test_resample_does_not_alias(src_rate: int) -> None:
    # Plain interpolation (audioop.ratecv) would fold these into the band.
    for frequency in (4400, 6000, 9000):
        assert _level_db(frequency, src_rate) < -55


@pytest.mark.parametrize(("src_rate", "length"), [(22050, 22050), (48000, 4800), (6000, 600)])
def test_resample_length(src_rate: int, length: int) -> None:
    out = _audio.resample(array.array("h", [0] * length), src_rate)
    assert len(out) == length * 8000 // src_rate


def test_resample_same_rate_is_a_copy() -> None:
    samples = array.array("h", [1, -2, 3])
    assert _audio.resample(samples, 8000) == samples


def test_resample_refuses_nonsense_rates() -> None:
    with pytest.raises(ValueError):
        _audio.resample(array.array("h"), 0)


def test_resample_saturates_instead_of_wrapping() -> None:
    square = array.array("h", ([32767] * 20 + [-32768] * 20) * 200)
    out = _audio.resample(square, 22050)
    assert max(out) == 32767 and min(out) == -32768  # Gibbs overshoot, clipped


def _segment(samples: array.array[int], rate: int, channels: int = 1) -> object:
    frames = array.array("h", (s for s in samples for _ in range(channels)))
    return _audio.pydub().AudioSegment(
        data=frames.tobytes(), sample_width=2, frame_rate=rate, channels=channels
    )


def test_to_telephony_trims_normalises_and_converts() -> None:
    seg = _segment(tone(440, 44100, 1.0, amplitude=3000, pad_seconds=0.5), 44100, channels=2)
    out = _audio.to_telephony(seg)
    assert (out.frame_rate, out.channels, out.sample_width) == (8000, 1, 2)
    # 1 s of tone plus at most the kept 20 + 40 ms (and a chunk of slack)
    assert 1000 <= len(out) <= 1000 + 20 + 40 + 10
    assert out.dBFS == pytest.approx(_audio.TARGET_DBFS, abs=0.2)


def test_to_telephony_keeps_peaks_below_the_ceiling() -> None:
    # A click train: low RMS, high peaks; normalising to the RMS target would clip.
    clicks = array.array("h", ([20000] + [0] * 399) * 20)
    out = _audio.to_telephony(_segment(clicks, 8000))
    assert out.max_dBFS <= _audio.PEAK_CEILING_DBFS + 0.1


def test_to_telephony_refuses_silence() -> None:
    with pytest.raises(_audio.SilentAudio):
        _audio.to_telephony(_segment(array.array("h", [0] * 8000), 8000))


def test_encode_wav_is_canonical_and_deterministic() -> None:
    out = _audio.to_telephony(_segment(tone(440, 22050, 0.3), 22050))
    data = _audio.encode_wav(out)
    assert data == _audio.encode_wav(_audio.to_telephony(_segment(tone(440, 22050, 0.3), 22050)))
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt "
    with wave.open(io.BytesIO(data)) as f:
        assert (f.getframerate(), f.getnchannels(), f.getsampwidth()) == (8000, 1, 2)


def test_encode_wav_only_takes_finished_prompts() -> None:
    with pytest.raises(ValueError):
        _audio.encode_wav(_segment(tone(440, 22050, 0.1), 22050))


def test_write_atomically_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.wav"
    _audio.write_atomically(target, b"one")
    _audio.write_atomically(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["b.wav"]
