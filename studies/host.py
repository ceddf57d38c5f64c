"""The attnas workers live on this host, so each can take its share of the CPUs (trainer.threads).

Each worker holds an exclusive `fcntl` lock on its own file in a per-user folder (/dev/shm/attnas-workers-<uid>,
else the temp folder; ATTNAS_HOST_DIR overrides) for as long as it lives, with the CPUs it may use written in
it. A file whose lock can be taken belongs to a dead worker (the kernel drops a lock with its process, even
after SIGKILL) and is removed by whoever finds it. Counted again at every trial start and after every epoch,
so a worker that joins or leaves changes the others' share from their next epoch on.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from trainer.threads import allowed_cpus, positive_env, thread_count, use_threads

_registration: list[IO[str]] = []  # this process's own locked file, kept open for its life


def folder() -> Path:
    """The per-user folder of worker files on this host."""
    if os.environ.get("ATTNAS_HOST_DIR"):
        return Path(os.environ["ATTNAS_HOST_DIR"])
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    return base / f"attnas-workers-{os.getuid()}"


def register() -> Path:
    """Register this process as a worker on this host (once per process); the path of its file."""
    if _registration:
        return Path(_registration[0].name)
    where = folder()
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle = open(where / f"{os.getpid()}.worker", "w")  # noqa: SIM115 (held open: the lock lives with it)
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    handle.write(json.dumps(sorted(allowed_cpus())))
    handle.flush()
    _registration.append(handle)
    return Path(handle.name)


def other_workers() -> list[frozenset[int]]:
    """The CPUs of every other live worker on this host; dead workers' files are removed on the way."""
    mine = Path(_registration[0].name).name if _registration else None
    found = []
    with contextlib.suppress(FileNotFoundError):
        for path in folder().glob("*.worker"):
            if path.name != mine:
                cpus = _live_cpus(path)
                if cpus is not None:
                    found.append(cpus)
    return found


def _live_cpus(path: Path) -> frozenset[int] | None:
    """The CPUs in a live worker's file; None (and the file removed) when its worker is gone."""
    try:
        with open(path) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # held: its worker lives
                text = handle.read()
                try:
                    return frozenset(json.loads(text))
                except ValueError:  # still being written: assume it shares every CPU
                    return frozenset(allowed_cpus())
            path.unlink(missing_ok=True)
            return None
    except FileNotFoundError:
        return None


def size_threads() -> int:
    """Register (once), count the workers sharing this process's CPUs, set torch's threads to the share."""
    register()
    count = thread_count(allowed_cpus(), other_workers(), slurm_cpus=positive_env("SLURM_CPUS_PER_TASK"),
                         explicit=positive_env("ATTNAS_THREADS"), omp=positive_env("OMP_NUM_THREADS"))
    return use_threads(count)


def resizing(on_epoch: Callable[[Any], bool | None] | None = None) -> Callable[[Any], bool | None]:
    """An `on_epoch` hook for proxy_train that sizes the threads again before `on_epoch` (which decides, as
    ever, whether training goes on): processes started together may each size themselves before the others
    have registered, and a worker that joins or leaves mid-trial changes the others' share from the next epoch.
    Runs on the training thread, which is the one whose OpenMP thread count matters."""

    def hook(stats: Any) -> bool | None:
        size_threads()
        return on_epoch(stats) if on_epoch is not None else None

    return hook
