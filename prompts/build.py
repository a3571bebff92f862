"""Render every sound of the catalogue with espeak-ng: ``python -m prompts.build``.

For each language and each name in ``all_sounds()``: espeak-ng speaks the
text (with the respellings of manifest.toml's ``[pronounce]``) into a
22,050 Hz WAV, pydub loads it, ``_audio.to_telephony`` makes it an 8 kHz mono
16-bit prompt, trimmed and normalised, and it is written to
``<out_dir>/<lang>/<name>.wav``. Sounds no longer in the catalogue are
removed; custom recordings (``ivr/custom/``) are never touched.

``<out_dir>/build-info.json`` records, per file, the text it says and its
SHA-256, plus the tool version and settings: tests compare it with the
catalogue, so an edit of manifest.toml without a rebuild fails CI, while CI
itself needs neither espeak-ng nor ffmpeg.

Reproducible: fixed voice, speed, pitch, amplitude and word gap, no dither,
no timestamps, canonical WAV headers, so the same espeak-ng version gives the
same bytes (``--check`` verifies it against the files on disk).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from . import _audio
from ._catalogue import LANGUAGES, SOUNDS_DIR, all_sounds, check_language, pronunciations, text_of
from ._errors import PromptBuildError, PromptToolMissing

__all__ = ["BUILD_INFO", "ESPEAK_SETTINGS", "Progress", "build", "main", "spoken_text"]

#: Called after each file: (files done, files in total, "<lang>/<name>").
Progress = Callable[[int, int, str], None]

#: Written next to the language directories; see the module docstring.
BUILD_INFO = "build-info.json"

#: espeak-ng options. Changing one changes every file: rebuild and commit.
ESPEAK_SETTINGS: Mapping[str, int] = {
    "speed": 150,  # words per minute; espeak-ng's 175 is hurried on a phone line
    "pitch": 50,
    "amplitude": 100,
    "word_gap": 0,  # units of 10 ms
}
_VOICES: Mapping[str, str] = {"de": "de", "en": "en"}
_ESPEAK_TIMEOUT_S = 60
_CUSTOM_DIR = "custom"  # <lang>/ivr/custom/ belongs to importer.py


def _espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise PromptToolMissing("espeak-ng is not installed: apt-get install espeak-ng")
    return path


def _tool_version(espeak: str) -> str:
    """Return e.g. "eSpeak NG text-to-speech: 1.51", without the data path."""
    result = subprocess.run(
        [espeak, "--version"],
        check=False,
        capture_output=True,
        text=True,
        timeout=_ESPEAK_TIMEOUT_S,
    )
    if result.returncode != 0:
        raise PromptBuildError(f"espeak-ng --version failed: {result.stderr.strip()}")
    return result.stdout.split("Data at:")[0].strip()


def spoken_text(text: str, language: str) -> str:
    """Return ``text`` with the manifest's respellings applied: what espeak-ng reads."""
    for word, said in pronunciations(language).items():
        text = re.sub(rf"(?<!\w){re.escape(word)}(?!\w)", said, text)
    return text


def _render(espeak: str, text: str, language: str, workdir: Path) -> bytes:
    """Return espeak-ng's WAV (22,050 Hz mono 16-bit) for ``text``."""
    text_file = workdir / "text.txt"
    wav_file = workdir / "speech.wav"
    text_file.write_text(text, encoding="utf-8")  # a file, so no text is taken for an option
    command = [
        espeak,
        "-v", _VOICES[language],
        "-s", str(ESPEAK_SETTINGS["speed"]),
        "-p", str(ESPEAK_SETTINGS["pitch"]),
        "-a", str(ESPEAK_SETTINGS["amplitude"]),
        "-g", str(ESPEAK_SETTINGS["word_gap"]),
        "-b", "1",  # UTF-8 input
        "-z",  # no final sentence pause; trimming would remove it anyway
        "-w", str(wav_file),
        "-f", str(text_file),
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, check=False, capture_output=True, timeout=_ESPEAK_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        raise PromptBuildError(f"espeak-ng took over {_ESPEAK_TIMEOUT_S} s for {text!r}") from exc
    if result.returncode != 0 or not wav_file.is_file():
        stderr = result.stderr.decode("utf-8", "replace").strip()
        raise PromptBuildError(f"espeak-ng failed ({result.returncode}) for {text!r}: {stderr}")
    return wav_file.read_bytes()


def _finish(raw_wav: bytes, where: str) -> bytes:
    """Return espeak-ng's WAV as a finished prompt's WAV bytes."""
    try:
        segment = _audio.pydub().AudioSegment(data=raw_wav)
        return _audio.encode_wav(_audio.to_telephony(segment))
    except _audio.SilentAudio as exc:
        raise PromptBuildError(f"{where}: espeak-ng produced silence") from exc
    except _audio.pydub().exceptions.CouldntDecodeError as exc:
        raise PromptBuildError(f"{where}: espeak-ng wrote no valid WAV: {exc}") from exc


def _info_path(out_dir: Path) -> Path:
    return out_dir / BUILD_INFO


def _load_info(out_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads(_info_path(out_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _prune(lang_dir: Path, keep: set[Path]) -> None:
    """Remove built files of sounds the catalogue no longer has."""
    ivr = lang_dir / "ivr"
    if not ivr.is_dir():
        return
    for path in sorted(ivr.rglob("*.wav")):
        if path.relative_to(ivr).parts[0] == _CUSTOM_DIR or path in keep:
            continue
        path.unlink()
    for directory in sorted(ivr.rglob("*"), reverse=True):  # deepest first
        if directory.is_dir() and directory.name != _CUSTOM_DIR and not any(directory.iterdir()):
            directory.rmdir()


def build(
    out_dir: Path = SOUNDS_DIR,
    languages: Iterable[str] = LANGUAGES,
    progress: Progress | None = None,
) -> list[Path]:
    """Render every catalogue sound for ``languages`` into ``out_dir``.

    Returns the written files, in build order. Raises ``PromptToolMissing``
    if espeak-ng is absent, ``PromptBuildError`` if it fails, ``ValueError``
    for an unsupported language.
    """
    languages = [check_language(lang) for lang in languages]
    espeak = _espeak()
    out_dir = Path(out_dir)
    names = sorted(all_sounds())
    total = len(names) * len(languages)
    info = _load_info(out_dir)
    info_sounds: dict[str, Any] = (
        info.get("sounds", {}) if isinstance(info.get("sounds"), dict) else {}
    )
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="prompts-build-") as tmp:
        workdir = Path(tmp)
        for lang in languages:
            entries: dict[str, dict[str, str]] = {}
            for name in names:
                text = text_of(name, lang)
                where = f"{lang}/{name}"
                data = _finish(_render(espeak, spoken_text(text, lang), lang, workdir), where)
                path = out_dir / lang / f"{name}.wav"
                _audio.write_atomically(path, data)
                entries[name] = {"text": text, "sha256": hashlib.sha256(data).hexdigest()}
                written.append(path)
                if progress is not None:
                    progress(len(written), total, where)
            info_sounds[lang] = entries
            _prune(out_dir / lang, set(written))
    info = {
        "generator": "python -m prompts.build",
        "tool": _tool_version(espeak),
        "settings": build_settings(),
        "sounds": {lang: info_sounds[lang] for lang in sorted(info_sounds)},
    }
    _audio.write_atomically(_info_path(out_dir), _dump_info(info))
    return written


def build_settings() -> dict[str, Any]:
    """Return everything besides the texts that shapes the built files."""
    return {
        "espeak": dict(ESPEAK_SETTINGS),
        "voices": dict(_VOICES),
        "pronounce": {lang: dict(pronunciations(lang)) for lang in LANGUAGES},
        "audio": _audio.settings(),
    }


def _dump_info(info: Mapping[str, Any]) -> bytes:
    return (json.dumps(info, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _differences(a: Path, b: Path) -> list[str]:
    """Return the relative paths of built files that differ between two trees."""

    def files(root: Path) -> dict[str, bytes]:
        return {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in root.rglob("*")
            if p.is_file() and _CUSTOM_DIR not in p.relative_to(root).parts
        }

    left, right = files(a), files(b)
    return sorted(k for k in left.keys() | right.keys() if left.get(k) != right.get(k))


def main(argv: list[str] | None = None) -> int:
    """Command line: build the prompts (or ``--check`` them). Returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m prompts.build",
        description="Render the prompt catalogue with espeak-ng into 8 kHz mono WAV files.",
    )
    parser.add_argument("--out", type=Path, default=SOUNDS_DIR, help="default: %(default)s")
    parser.add_argument(
        "--language", action="append", choices=LANGUAGES, help="repeatable; default: all"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="build into a temporary directory and compare with --out byte for byte",
    )
    args = parser.parse_args(argv)
    languages = args.language or list(LANGUAGES)

    def show(done: int, total: int, name: str) -> None:
        print(f"\r[{done:4}/{total}] {name:<40}", end="", file=sys.stderr, flush=True)

    try:
        if args.check:
            with tempfile.TemporaryDirectory(prefix="prompts-check-") as tmp:
                # Start from a copy so untouched languages and pruning compare equal.
                fresh = Path(tmp) / "sounds"
                if args.out.is_dir():
                    shutil.copytree(args.out, fresh, ignore=shutil.ignore_patterns(_CUSTOM_DIR))
                build(fresh, languages, show)
                print(file=sys.stderr)
                differing = _differences(args.out, fresh)
                for name in differing:
                    print(f"differs: {name}", file=sys.stderr)
                if differing:
                    print(f"CheckFailed: {args.out} differs from a fresh build", file=sys.stderr)
                    return 1
                print(f"OK: {args.out} matches a fresh build byte for byte", file=sys.stderr)
                return 0
        written = build(args.out, languages, show)
    except (PromptToolMissing, PromptBuildError) as exc:
        print(file=sys.stderr)
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(file=sys.stderr)
    size = sum(p.stat().st_size for p in written)
    print(f"wrote {len(written)} files, {size / 1e6:.1f} MB, to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
