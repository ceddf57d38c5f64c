"""The trial queue: how a study's total stays exact with any number of workers.

`create` (and every worker, under a cross-process lock) tops the study up to N slots by queueing empty
WAITING trials; workers only ever *claim* a WAITING trial (studies.liveness: an atomic storage update)
and never ask Optuna for a fresh one, so no number of workers can overshoot N. A failed trial that was
re-queued (a retry carries its number in `retry_history`) does not count as a slot of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import optuna

from .storage import StorageInfo


def retried_numbers(trials: list[optuna.trial.FrozenTrial]) -> set[int]:
    """Trials that failed and were re-queued (their retry carries them in system_attrs.retry_history)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def planned(study: optuna.Study) -> int:
    """Slots the study holds: every trial except those that were retried by a later one."""
    trials = study.get_trials(deepcopy=False)
    return len(trials) - len(retried_numbers(trials) & {t.number for t in trials})


def top_up(info: StorageInfo, storage: Any, study: optuna.Study, total: int) -> int:
    """Queue empty trials until the study holds `total` slots; returns how many were queued."""
    with lock(info, storage, study.study_name):
        missing = total - planned(study)
        for _ in range(max(0, missing)):
            study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING))
    return max(0, missing)


@contextlib.contextmanager
def lock(info: StorageInfo, storage: Any, name: str) -> Iterator[None]:
    """A cross-process lock for top-ups: a file lock next to local files, an advisory lock on PostgreSQL."""
    if info.path is not None:
        from filelock import FileLock

        with FileLock(str(info.path) + ".attnas-lock"):
            yield
    elif info.url.startswith("postgresql"):
        from sqlalchemy import text

        with storage.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": "attnas:" + name})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": "attnas:" + name})
    else:
        yield
