"""Where the engine's CPU goes: py-spy samples of the engine process, summed up.

py-spy (``pip install -e '.[bench]'``) attaches to the running engine by pid and
writes collapsed stacks (``--format raw``: ``frame;frame;… count`` per line, the
first frame naming the thread). The summary gives, over the busy samples:

* per thread: the event loop versus aiosqlite's worker thread;
* per area (inclusive): logging, the store, metrics, number parsing, the AGI
  codec and channel, asyncio itself…; a stack counts once per area;
* per function: self time (the frame on top) and inclusive time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["AREAS", "py_spy", "summarise"]

#: area -> regular expression on a frame "function (file:line)"; first match per frame wins.
AREAS: list[tuple[str, str]] = [
    ("logging (structlog + stdlib logging + json)", r"\((structlog|logging|json)/"),
    ("store (aiosqlite, sqlite3, rating/store)", r"\((aiosqlite|sqlite3)/|rating/store/|\(threading\.py"),
    ("metrics (prometheus_client)", r"\(prometheus_client/"),
    ("caller numbers (phonenumbers, rating/numbers)", r"\(phonenumbers/|rating/numbers\.py"),
    ("prompts (sounds, custom prompts, remaining time)", r"\(prompts/"),
    ("AGI codec + channel (agi/)", r"\(agi/"),
    ("flow + call context (ivr/)", r"\(ivr/"),
    ("asyncio streams + transports", r"asyncio/(streams|selector_events|transports)\.py"),
]
_FRAME_RE = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    """The py-spy executable next to this Python, or on PATH; None if not installed."""
    here = Path(sys.executable).with_name("py-spy")
    if here.exists():
        return str(here)
    return shutil.which("py-spy")


def record(pid: int, output: Path, *, rate: int = 250, native: bool = False) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` until the returned process gets SIGINT; with ``native`` the C
    frames too (uvloop, sqlite3, the interpreter), so time in C gets a name."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install -e '.[bench]')")
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                             "--threads", *(["--native"] if native else ["--nonblocking"]), "-o", str(output)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _short(frame: str) -> str:
    m = _FRAME_RE.match(frame)
    if not m:
        return frame
    path = m.group("file")
    for marker in ("site-packages/", "python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m.group('func')} ({path})"


def summarise(raw: str, *, top: int = 15) -> dict[str, Any]:
    """Sum up py-spy's raw output: samples per thread, per area, per function."""
    threads: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    compiled = [(name, re.compile(rx)) for name, rx in AREAS]
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0]
        frames = frames[1:]
        name = "event loop (MainThread)" if "MainThread" in thread else "other threads (aiosqlite worker)"
        threads[name] += count
        total += count
        seen_areas: set[str] = set()
        for frame in frames:
            for area, rx in compiled:
                if rx.search(frame):
                    seen_areas.add(area)
                    break
        if not seen_areas:
            seen_areas.add("other")
        for area in seen_areas:
            areas[area] += count
        if frames:
            self_time[_short(frames[-1])] += count
        for frame in set(frames):
            inclusive[_short(frame)] += count

    def share(counter: Counter[str], n: int | None = None) -> list[dict[str, Any]]:
        return [{"name": k, "samples": v, "share": round(v / total, 4) if total else 0.0}
                for k, v in counter.most_common(n)]

    return {"samples": total, "threads": share(threads), "areas": share(areas),
            "self": share(self_time, top), "inclusive": share(inclusive, top * 2)}
