"""The settlement journal: what the store could not take, kept on local disk until it can.

When the store does not answer within its budget (locked by another process, disk
full, read-only, a database server down), a call's settlement and CDR are appended
here before the call ends, and replayed — in order, exactly once — when the store is
back: by the engine's background task or by ``ivr journal replay``.

How this works
--------------
``<state_dir>/journal.jsonl``, mode 0600, one JSON object per line, each carrying a
CRC-32 of its own canonical text (``sort_keys``, no spaces) so that a damaged line is
told apart from a good one:

* ``{"kind": "call", "id", "at_ms", "grant" | null, "debit_s", "cdr", "crc"}`` —
  everything ``settle_and_record`` needs: the hold (id, card, seconds held, talk
  limit), the debit by the project's rule, the CDR, and the moment of the settlement
  (the ledger row keeps the call's time, not the replay's);
* ``{"kind": "done", "ref": <id>, "at_ms", "crc"}`` — that entry reached the store.

Appends take ``journal.lock`` (``flock``, exclusive, microseconds), write one line
with ``O_APPEND``, ``fsync`` the file (and the directory when the file is new), so an
entry the engine reported as journalled survives a crash or a power cut. A crash
mid-append leaves a partial last line (no newline): it is reported as *torn* and
never replayed (its call was never reported journalled); the next append starts on a
new line, so a torn tail cannot glue itself to a good entry.

Exactly once: the store's ``settle_and_record_once`` writes nothing for an entry that
reached it before (the hold is settled, or the same CDR exists), so a replay cut
between the store's commit and the ``done`` line repeats harmlessly. Two replayers
(two engines on one state directory, an engine and the CLI) exclude each other with
``replay.lock``; the second one skips (the engine) or waits (the CLI).

When every entry is done the file is compacted (removed); damaged lines then go to
``journal.damaged`` for the operator, never silently away.

Disk full: the journal usually shares the database's disk. ``journal.reserve`` is a
1 MiB file allocated while there is room; an append that hits ENOSPC frees it and
tries once more (about a thousand entries), and it is allocated again once the
journal is empty.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rating.errors import RatingError, StoreUnavailable
from rating.models import Cdr, Grant
from rating.store.base import CallStore
from rating.zones import QuotaPeriod

__all__ = ["Damage", "Entry", "Journal", "JournalBusy", "JournalContents", "ReplayResult", "replay"]

VERSION = 1
BALLAST_BYTES = 1 << 20
_FILE_MODE = 0o600
_DIR_MODE = 0o700


class JournalBusy(Exception):
    """Another engine or CLI is replaying this journal now."""


@dataclass(frozen=True)
class Entry:
    """One journalled call: its hold (None when it had none), the debit by the project's
    rule with the factor and monthly quota it is rated at, the CDR."""

    id: str
    at_ms: int
    grant: Grant | None
    debit_s: int
    cdr: Cdr
    factor_pm: int = 1000
    quota: QuotaPeriod | None = None
    line: int = 0

    @classmethod
    def new(cls, grant: Grant | None, *, debit_s: int, cdr: Cdr, at_ms: int, factor_pm: int = 1000,
            quota: QuotaPeriod | None = None) -> Entry:
        return cls(id=uuid.uuid4().hex, at_ms=at_ms, grant=grant, debit_s=debit_s, cdr=dataclasses.replace(cdr),
                   factor_pm=factor_pm, quota=quota)

    def record(self) -> dict[str, Any]:
        return {"v": VERSION, "kind": "call", "id": self.id, "at_ms": self.at_ms,
                "grant": dataclasses.asdict(self.grant) if self.grant is not None else None,
                "debit_s": self.debit_s, "factor_pm": self.factor_pm,
                "quota": dataclasses.asdict(self.quota) if self.quota is not None else None,
                "cdr": dataclasses.asdict(self.cdr)}

    async def write_to(self, store: CallStore) -> int | None:
        """Settle and record it in the store, exactly once (None: it was there already)."""
        return await store.settle_and_record_once(self.grant, debit_s=self.debit_s, cdr=dataclasses.replace(self.cdr),
                                                  now_ms=self.at_ms, factor_pm=self.factor_pm, quota=self.quota)


@dataclass(frozen=True)
class Damage:
    line: int
    reason: str
    torn: bool   # the partial last line of an interrupted append


@dataclass
class JournalContents:
    pending: list[Entry] = field(default_factory=list)
    done: int = 0
    damaged: list[Damage] = field(default_factory=list)

    @property
    def oldest_ms(self) -> int | None:
        return min((e.at_ms for e in self.pending), default=None)


def _encode(record: dict[str, Any]) -> bytes:
    body = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    record = {**record, "crc": f"{zlib.crc32(body.encode()):08x}"}
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _decode(raw: bytes) -> dict[str, Any]:
    """One line's record; raises ValueError when it is not one we wrote whole."""
    record = json.loads(raw.decode())
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    crc = record.pop("crc", None)
    body = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if crc != f"{zlib.crc32(body.encode()):08x}":
        raise ValueError("checksum mismatch")
    if record.get("v") != VERSION:
        raise ValueError(f"unknown version {record.get('v')!r}")
    return record


def _entry(record: dict[str, Any], line: int) -> Entry:
    try:
        grant = Grant(**record["grant"]) if record["grant"] is not None else None
        quota = QuotaPeriod(**record["quota"]) if record["quota"] is not None else None
        return Entry(id=str(record["id"]), at_ms=int(record["at_ms"]), grant=grant,
                     debit_s=int(record["debit_s"]), cdr=Cdr(**record["cdr"]), factor_pm=int(record["factor_pm"]),
                     quota=quota, line=line)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"incomplete entry: {exc}") from exc


class Journal:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "journal.jsonl"
        self.damaged_path = self.directory / "journal.damaged"
        self.ballast_path = self.directory / "journal.reserve"
        self._lock_path = self.directory / "journal.lock"
        self._replay_lock_path = self.directory / "replay.lock"

    # --- files and locks ---------------------------------------------------
    def _ensure_dir(self) -> None:
        if not self.directory.is_dir():
            self.directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            os.chmod(self.directory, _DIR_MODE)  # whatever the umask

    def _open(self, path: Path, flags: int) -> int:
        """Open (creating with mode 0600 whatever the umask)."""
        fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        try:
            if os.fstat(fd).st_mode & 0o777 != _FILE_MODE:
                os.fchmod(fd, _FILE_MODE)
        except OSError:
            os.close(fd)
            raise
        return fd

    @contextmanager
    def _flock(self, path: Path, *, wait: bool = True) -> Iterator[bool]:
        self._ensure_dir()
        fd = self._open(path, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the lock

    @contextmanager
    def replaying(self, *, wait: bool) -> Iterator[None]:
        """Hold the replay lock; raises JournalBusy when ``wait`` is false and another has it."""
        with self._flock(self._replay_lock_path, wait=wait) as got:
            if not got:
                raise JournalBusy(f"another engine or CLI is replaying {self.path}")
            yield

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- writing -----------------------------------------------------------
    def append(self, entry: Entry) -> Entry:
        """Append one call and fsync it; blocking (run it on a thread). Raises OSError when
        even the reserve could not make room."""
        self._append_lines(_encode(entry.record()))
        return entry

    def mark_done(self, ids: list[str], at_ms: int) -> None:
        if ids:
            self._append_lines(b"".join(_encode({"v": VERSION, "kind": "done", "ref": i, "at_ms": at_ms})
                                        for i in ids))

    def _append_lines(self, data: bytes) -> None:
        try:
            self._append_locked(data)
        except OSError as exc:
            if exc.errno != errno.ENOSPC or not self.ballast_path.exists():
                raise
            self.ballast_path.unlink()  # the room kept for this moment
            self._append_locked(data)

    def _append_locked(self, data: bytes) -> None:
        with self._flock(self._lock_path):
            new = not self.path.exists()
            fd = self._open(self.path, os.O_RDWR | os.O_APPEND)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # after a torn tail: start on a line of our own
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            if new:
                self._fsync_dir()

    def ensure_ballast(self) -> bool:
        """Allocate the reserve if it is missing; False when there is no room for it."""
        self._ensure_dir()
        if self.ballast_path.exists():
            return True
        fd = self._open(self.ballast_path, os.O_WRONLY)
        try:
            os.posix_fallocate(fd, 0, BALLAST_BYTES)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            self.ballast_path.unlink(missing_ok=True)
            return False
        os.close(fd)
        return True

    # --- reading -----------------------------------------------------------
    def read(self) -> JournalContents:
        """Pending entries in order, how many are done, and any damaged or torn line."""
        contents = JournalContents()
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return contents
        pending: dict[str, Entry] = {}
        lines = raw.split(b"\n")
        for number, line in enumerate(lines, start=1):
            last = number == len(lines)
            if not line:
                continue
            try:
                record = _decode(line)
                if record.get("kind") == "call":
                    entry = _entry(record, number)
                    pending[entry.id] = entry
                elif record.get("kind") == "done":
                    if pending.pop(str(record.get("ref")), None) is not None:
                        contents.done += 1
                else:
                    raise ValueError(f"unknown kind {record.get('kind')!r}")
            except (ValueError, UnicodeDecodeError) as exc:
                torn = last  # no newline after it: an append that never finished
                contents.damaged.append(Damage(number, "torn: an append that did not finish" if torn
                                               else str(exc), torn))
        contents.pending = list(pending.values())
        return contents

    def compact(self) -> JournalContents:
        """When nothing is pending: move damaged lines to ``journal.damaged`` and remove the
        journal. Returns what was read."""
        with self._flock(self._lock_path):
            contents = self.read()
            if contents.pending or not self.path.exists():
                return contents
            if contents.damaged:
                lines = self.path.read_bytes().split(b"\n")
                fd = self._open(self.damaged_path, os.O_WRONLY | os.O_APPEND)
                try:
                    os.write(fd, b"".join(lines[d.line - 1] + b"\n" for d in contents.damaged))
                    os.fsync(fd)
                finally:
                    os.close(fd)
            self.path.unlink()
            self._fsync_dir()
            return contents


@dataclass
class ReplayResult:
    written: list[tuple[Entry, int | None]] = field(default_factory=list)  # (entry, seconds debited or None)
    failed: list[tuple[Entry, str]] = field(default_factory=list)           # refused by the store: kept
    stopped: str | None = None       # the store is still unavailable: the rest waits
    left: int = 0
    damaged: list[Damage] = field(default_factory=list)


Offload = Callable[..., Awaitable[Any]]


async def replay(journal: Journal, store: CallStore, *, offload: Offload, now_ms: Callable[[], int],
                 wait: bool = False) -> ReplayResult:
    """Write every pending entry to the store, in order, and mark it done; stop at the first
    StoreUnavailable (the rest waits for the next try). ``offload(fn, *args)`` runs blocking
    file work off the event loop (``asyncio.to_thread``). Raises JournalBusy (``wait=False``)."""
    result = ReplayResult()
    lock = journal.replaying(wait=wait)
    await offload(lock.__enter__)
    try:
        contents: JournalContents = await offload(journal.read)
        result.damaged = contents.damaged
        for index, entry in enumerate(contents.pending):
            try:
                debited = await entry.write_to(store)
            except StoreUnavailable as exc:
                result.stopped = str(exc)
                result.left = len(contents.pending) - index
                break
            except RatingError as exc:  # the store refuses this one: keep it, go on with the others
                result.failed.append((entry, f"{type(exc).__name__}: {exc}"))
                continue
            await offload(journal.mark_done, [entry.id], now_ms())
            result.written.append((entry, debited))
        else:
            result.left = len(result.failed)
        if result.left == 0 and (result.written or contents.done or contents.damaged):
            await offload(journal.compact)
            await offload(journal.ensure_ballast)
    finally:
        await offload(lock.__exit__, None, None, None)
    return result
