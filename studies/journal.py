"""Optuna journal files that survive torn writes: healed on open, repaired on request, appended atomically.

Why: Optuna's JournalFileBackend tolerates a truncated last line when reading, but the next append is glued
onto it, and from then on every read fails on a bare JSON error. A full disk, a SIGKILL mid-write or a
node crash on shared disk all produce such a line. Here:

- `heal(path)` (run by studies.storage.open_storage, under the journal's own lock) moves an unreadable tail
  aside: the file is backed up, the tail's bytes go to `<file>.rejected`, the file is cut back to its last
  complete record (a record glued onto the torn bytes is kept), and one warning line says so.
- `first_unreadable(path)` names an unreadable line *inside* the file; `repair(path)` (`attnas repair`)
  backs the file up, moves every unreadable line to `.rejected` and leaves a journal Optuna replays.
- `SafeJournalBackend` appends under the same lock Optuna's default backend uses (a symlink `<file>.lock`,
  so plain Optuna processes on the same file stay safe) and never leaves a partial line: on a write error
  (ENOSPC, EIO, ...) the file is cut back to where the append began and the error is one line naming it.
- `AttnasJournalStorage` (what `open_journal` returns) is Optuna's JournalStorage plus `exclusive()`: a block
  that holds that lock, so a read-check-write in it is atomic across processes (studies.queue's dedup index)
  and its attribute writes go out as one append (one lock, one fsync) instead of one each.

The file format (one compact JSON object per line, each with an `op_code`) is Optuna's; tests/studies/
test_journal.py pins it and the shared lock against the installed Optuna, so an upgrade that changes either
fails loudly there.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalFileSymlinkLock
from optuna.storages.journal._storage import JournalOperation, JournalStorageReplayResult

from .config import StudyError

log = logging.getLogger(__name__)

#: Where a record starts in Optuna's journal lines (its first key), used to salvage a record glued onto torn
#: bytes by an append that did not check for them.
RECORD_START = b'{"op_code"'
TAIL_CHUNK = 1 << 16
#: Seconds a journal lock may stay unchanged before a waiting process breaks it: Optuna's default, which plain
#: Optuna processes on the same file use too; the override exists for tests.
LOCK_GRACE_S = int(os.environ.get("ATTNAS_LOCK_GRACE_S", "30"))
#: The two public lock classes of Optuna's file backend (their common base class is not exported).
Lock = JournalFileSymlinkLock | JournalFileOpenLock
#: The records an `exclusive` block gathers into one append: attribute writes, which return nothing and whose
#: replay is idempotent (a key set again to the same value).
ATTR_OPS = frozenset({JournalOperation.SET_STUDY_USER_ATTR, JournalOperation.SET_STUDY_SYSTEM_ATTR,
                      JournalOperation.SET_TRIAL_USER_ATTR, JournalOperation.SET_TRIAL_SYSTEM_ATTR})


class JournalWriteError(StudyError):
    """An append that failed (disk full, I/O error); the journal was cut back to its last complete record."""

    def __init__(self, message: str, code: int | None) -> None:
        super().__init__(message)
        self.errno = code


@dataclass(frozen=True)
class RepairReport:
    """What `repair` did: records kept, 1-based line numbers moved aside, and where the backup is."""

    path: Path
    kept: int
    rejected_lines: tuple[int, ...]
    salvaged: int  # records recovered from the end of a line they had been glued onto
    backup: Path | None
    rejected: Path | None

    def summary(self) -> str:
        """One line for the CLI."""
        if not self.rejected_lines:
            return f"journal {self.path}: {self.kept} records, all readable; nothing to repair"
        lines = ", ".join(map(str, self.rejected_lines[:10])) + (" ..." if len(self.rejected_lines) > 10 else "")
        salvaged = f" ({self.salvaged} glued records recovered)" if self.salvaged else ""
        return (f"journal {self.path}: kept {self.kept} records{salvaged}; moved line(s) {lines} to "
                f"{self.rejected}; backup at {self.backup}")


def lock_for(path: Path) -> Lock:
    """The lock Optuna's JournalFileBackend uses by default for this file (a `<file>.lock` symlink), with its
    grace before a lock left unchanged is broken (Optuna's 30 s unless a test shortens it)."""
    return JournalFileSymlinkLock(str(path), grace_period=LOCK_GRACE_S)


@contextmanager
def locked(lock: Lock) -> Iterator[None]:
    """Hold a journal lock (acquire/release are the lock classes' public methods).

    Why the release is checked: Optuna breaks a lock left unchanged for 30 s (its grace), so a holder that was
    stopped that long (SIGSTOP, a suspended Slurm job, a paused VM) wakes without it, and another process may
    hold it by then. Optuna's release would delete that process's lock, or raise "did not possess lock" and
    fail the trial being written. Here the holder leaves a lock that is not its own alone, says so in one line
    and carries on: its appends were whole records, and its trial's lease (studies.liveness) decides whether
    its work still counts.
    """
    lock.acquire()
    mine = _lock_identity(lock)
    try:
        yield
    finally:
        if mine is None or _lock_identity(lock) == mine:
            lock.release()
        else:
            print(f"warning: the journal lock {getattr(lock, '_lock_file', '')} was broken while this process held "
                  f"it (it was stopped for longer than the {LOCK_GRACE_S} s lock grace); what it wrote stands, and it "
                  "carries on without releasing a lock that is no longer its own", file=sys.stderr, flush=True)


def _lock_identity(lock: Lock) -> tuple[int, int] | None:
    """The lock file this lock stands on, as (inode, change time): a lock broken and taken again by another
    process is another file, even on a file system that reuses the inode number. None: not there, or a lock
    class whose file is unknown."""
    with contextlib.suppress(AttributeError, OSError):
        st = os.lstat(lock._lock_file)  # both Optuna lock classes keep it there (pinned in tests/studies)
        return st.st_ino, st.st_ctime_ns
    return None


def readable(line: bytes) -> bool:
    """A complete journal record: a JSON object with an op_code, as Optuna replays it."""
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and isinstance(record.get("op_code"), int)


def split_glued(line: bytes) -> tuple[bytes, bytes | None]:
    """An unreadable line as (bytes to reject, a record glued onto its end or None)."""
    start = line.find(RECORD_START, 1)
    while start != -1:
        if readable(line[start:]):
            return line[:start], line[start:]
        start = line.find(RECORD_START, start + 1)
    return line, None


class SafeJournalBackend(JournalFileBackend):
    """Optuna's file backend whose appends never leave a partial line (reads are Optuna's own)."""

    def __init__(self, path: Path, lock: Lock | None = None) -> None:
        self.path = path
        self.lock = lock or lock_for(path)
        self._holder: int | None = None  # the thread holding the lock through `holding`
        super().__init__(str(path), lock_obj=self.lock)

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Hold the journal's lock for a block; appends from this thread inside it do not take it again."""
        me = threading.get_ident()
        if self._holder == me:
            yield
            return
        with locked(self.lock):
            self._holder = me
            try:
                yield
            finally:
                self._holder = None

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        """Append records as Optuna does, under its lock; on a write error cut back to where this began."""
        data = ("\n".join(json.dumps(r, separators=(",", ":")) for r in logs) + "\n").encode("utf-8")
        with self.holding():
            start = reject_torn_tail(self.path)
            try:
                _append(self.path, data)
            except OSError as exc:
                os.truncate(self.path, start)
                reason = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or type(exc).__name__)
                raise JournalWriteError(
                    f"journal {self.path}: {reason} while appending a record; the journal was cut back to its "
                    "last complete record, nothing else changed. Free space there and run the command again",
                    exc.errno) from None


class AttnasJournalStorage(JournalStorage):
    """Optuna's JournalStorage over a SafeJournalBackend, plus `exclusive()` (the file format stays Optuna's).

    It relies on JournalStorage internals (`_thread_lock`, `_write_log`, `_sync_with_backend`,
    `_replay_result`, and JournalOperation / JournalStorageReplayResult from optuna.storages.journal._storage);
    tests/studies/test_journal.py pins the behaviour against the installed Optuna.
    """

    _backend: SafeJournalBackend

    def __init__(self, backend: SafeJournalBackend) -> None:
        super().__init__(backend)
        self._thread_lock = threading.RLock()  # type: ignore[assignment]  # reads inside `exclusive` re-enter it
        self._pending: list[dict[str, Any]] | None = None  # attribute records of the open `exclusive` block

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._thread_lock = threading.RLock()  # type: ignore[assignment]
        self._pending = None

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """A block that holds the journal's lock (and this storage's thread lock) from start to end.

        The replay is synced when the block starts, so it holds the whole journal and nothing else can be
        appended until the block ends: a read-check-write in the block is atomic across processes. Attribute
        writes in the block are applied to the replay at once (exactly what the sync after their append would
        do, since no other record can land in between) and appended together, in order, when the block ends:
        one lock and one fsync for all of them. Any other write in the block (a trial, a param, a state) is
        appended at once, with the attribute writes before it. A kill -9 inside the block loses the attribute
        writes not appended yet, as if it had come before them; if an append fails, the replay is rebuilt from
        the file, so memory never holds what the file does not. Nested blocks join the outer one.
        """
        with self._thread_lock:
            if self._pending is not None:
                yield
                return
            with self._backend.holding():
                self._pending = []
                try:
                    self._sync_with_backend()
                    yield
                finally:
                    logs, self._pending = self._pending, None
                    if logs:
                        self._append(logs)
                        self._sync_with_backend()

    def _write_log(self, op_code: int, extra_fields: dict[str, Any]) -> None:
        if self._pending is None:
            super()._write_log(op_code, extra_fields)
            return
        log = {"op_code": op_code, "worker_id": self._replay_result.worker_id, **extra_fields}
        if op_code not in ATTR_OPS:
            logs, self._pending = [*self._pending, log], []
            self._append(logs)
            return
        log = json.loads(json.dumps(log, separators=(",", ":")))  # what a replay of the file holds, no alias
        try:
            self._replay_result.apply_logs([log])  # raises as the sync would, e.g. on a finished trial
        finally:
            self._replay_result.log_number_read -= 1  # not in the file yet: the sync after the append reads it
        self._pending.append(log)

    def _append(self, logs: list[dict[str, Any]]) -> None:
        """Append records whose attribute writes the replay already holds; on failure rebuild it from the file."""
        try:
            self._backend.append_logs(logs)
        except BaseException:
            self._replay_result = JournalStorageReplayResult(self._worker_id_prefix)
            with contextlib.suppress(Exception):
                self._sync_with_backend()
            raise


def exclusive(storage: BaseStorage) -> contextlib.AbstractContextManager[None]:
    """`storage.exclusive()` on a journal file (see AttnasJournalStorage); a no-op block on other storages."""
    return storage.exclusive() if isinstance(storage, AttnasJournalStorage) else contextlib.nullcontext()


def _append(path: Path, data: bytes) -> None:
    """Write all of `data` at the end of the file and fsync it (unbuffered, so a failure leaves no pending bytes)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def reject_torn_tail(path: Path) -> int:
    """Size of the journal once bytes after its last newline (a dead writer's torn line) are moved aside.

    Must run under the journal's lock. Nobody has read those bytes as a record (Optuna skips a line without
    its newline), so cutting them off cannot disturb another process' replay.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - 1))
        if f.read(1) in (b"", b"\n"):
            return size  # the usual case: one byte read per append
        f.seek(max(0, size - TAIL_CHUNK))
        tail = f.read()
    newline = tail.rfind(b"\n")
    if newline == -1 and size > len(tail):
        return size  # a single line longer than the chunk: leave it to heal()/repair
    torn = tail[newline + 1:]
    _write_rejected(path, [torn])
    os.truncate(path, size - len(torn))
    log.warning("journal %s: moved a torn last line (%d bytes, no newline) to %s", path, len(torn),
                rejected_path(path))
    return size - len(torn)


def rejected_path(path: Path) -> Path:
    return path.with_name(path.name + ".rejected")


def backup_path(path: Path) -> Path:
    """`<file>.bak-<UTC time>-<pid>`: unique per repair, sorts by time."""
    return path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}")


def _write_rejected(path: Path, chunks: list[bytes]) -> Path:
    target = rejected_path(path)
    with open(target, "ab") as f:
        for chunk in chunks:
            f.write(chunk if chunk.endswith(b"\n") else chunk + b"\n")
        f.flush()
        os.fsync(f.fileno())
    return target


def _backup(path: Path) -> Path:
    target = backup_path(path)
    shutil.copy2(path, target)
    return target


def unreadable_tail(path: Path) -> tuple[int, list[bytes], list[bytes]]:
    """(offset where the unreadable tail starts, its lines to reject, records glued onto them to keep).

    The tail is every line after the last readable record, including bytes without a newline. Only the end
    of the file is read (growing the window while it holds no readable record).
    """
    size = path.stat().st_size
    chunk = TAIL_CHUNK
    while True:
        begin = max(0, size - chunk)
        with open(path, "rb") as f:
            f.seek(begin)
            data = f.read()
        lines = data.split(b"\n")
        torn = lines.pop()  # bytes after the last newline ('' when the file ends with one)
        judged = lines if begin == 0 else lines[1:]  # the window's first line may start mid-line
        cut, bad = size - len(torn), [torn] if torn else []
        for line in reversed(judged):
            if readable(line):
                return cut, *_salvage(bad)
            cut -= len(line) + 1
            bad.insert(0, line)
        if begin == 0:
            return 0, *_salvage(bad)
        chunk *= 4


def _salvage(bad: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    rejected, kept = [], []
    for line in bad:
        junk, record = split_glued(line)
        rejected.append(junk)
        if record is not None:
            kept.append(record)
    return rejected, kept


def heal(path: Path, lock: Lock | None = None) -> str | None:
    """Move an unreadable tail aside (backup first); returns the one line saying so, or None if all was well."""
    if not path.exists() or not unreadable_tail(path)[1]:
        return None  # checked without the lock first, so clean journals open on read-only disks too
    with locked(lock or lock_for(path)):
        cut, rejected, kept = unreadable_tail(path)  # again: an append may just have completed the line
        if not rejected:
            return None
        backup = _backup(path)
        target = _write_rejected(path, rejected)
        with open(path, "r+b") as f:
            f.truncate(cut)
            f.seek(cut)
            f.write(b"".join(record + b"\n" for record in kept))
            f.flush()
            os.fsync(f.fileno())
    glued = f", kept {len(kept)} record(s) glued onto it" if kept else ""
    note = (f"journal {path}: moved an unreadable last line ({sum(map(len, rejected))} bytes) to {target}"
            f"{glued}; backup at {backup}")
    log.warning(note)
    return note


def note_unreadable_tail(path: Path) -> str | None:
    """One warning line when the journal ends in unreadable bytes (read-only: nothing is moved); else None."""
    rejected = unreadable_tail(path)[1]
    if not rejected:
        return None
    note = (f"journal {path} ends in {sum(map(len, rejected))} unreadable byte(s) (a torn write, or one in "
            "progress); read past them and left the file as it is: the next worker moves them aside, or run "
            f"`attnas repair {path}` while no worker runs")
    log.warning(note)
    return note


def first_unreadable(path: Path) -> int | None:
    """The 1-based number of the first unreadable complete line of the journal, or None."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if line.endswith(b"\n") and not readable(line):
                return number
    return None


def inside_error(path: Path, number: int) -> StudyError:
    return StudyError(f"journal {path}: line {number} is unreadable (torn or foreign bytes inside the file); "
                      f"stop its workers and run `attnas repair {path}` (it keeps a backup)")


def open_journal(path: Path, *, healing: bool = True) -> AttnasJournalStorage:
    """The journal's storage over a healed file; unreadable lines inside it are one line naming them.

    With `healing=False` (read commands: status, front, pick, report, dashboard) the file is left exactly as
    it is: Optuna's replay reads past a torn last line, and one note says the next writer (or `attnas
    repair`) will move it aside. A reader that rewrote the file would race the workers appending to it and
    leave a `.bak` and a `.rejected` behind every `attnas status`; writers append under the lock and move a
    torn tail aside first (`reject_torn_tail`), so healing belongs to them.
    """
    backend = SafeJournalBackend(path)
    if healing:
        heal(path, backend.lock)
    else:
        note_unreadable_tail(path)
    try:
        return AttnasJournalStorage(backend)
    except (ValueError, KeyError, TypeError):
        number = first_unreadable(path)
        if number is None:
            raise
        raise inside_error(path, number) from None


def repair(path: Path) -> RepairReport:
    """Keep every readable record (and records glued onto torn bytes), move the rest to `.rejected`.

    Stop the study's workers first: they remember byte offsets into the file. The result is checked by
    replaying it with Optuna before it replaces the journal; the original stays as `<file>.bak-...`.
    """
    if not path.is_file():
        raise StudyError(f"no journal file at {path}; give the journal's path (or journal:///path URL)")
    with locked(lock_for(path)):
        kept, rejected, numbers, salvaged = [], [], [], 0
        with open(path, "rb") as f:
            for number, line in enumerate(f, start=1):
                body = line.rstrip(b"\n")
                if line.endswith(b"\n") and readable(body):
                    kept.append(body)
                    continue
                junk, record = split_glued(body)
                numbers.append(number)
                rejected.append(junk)
                if record is not None:
                    kept.append(record)
                    salvaged += 1
        if not numbers:
            return RepairReport(path, len(kept), (), 0, None, None)
        backup = _backup(path)
        scratch = path.with_name(path.name + f".repair-{os.getpid()}")
        scratch.write_bytes(b"".join(record + b"\n" for record in kept))
        try:
            JournalStorage(JournalFileBackend(str(scratch))).get_all_studies()
        except Exception as exc:
            scratch.unlink()
            raise StudyError(f"journal {path}: the readable records do not replay in Optuna ({exc}); the file "
                             f"is unchanged, backup at {backup}") from None
        target = _write_rejected(path, rejected)
        os.replace(scratch, path)
    return RepairReport(path, len(kept), tuple(numbers), salvaged, backup, target)
