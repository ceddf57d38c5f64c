"""The trial queue: how a study's total stays exact with any number of workers.

`create` (and every worker, under a cross-process lock) tops the study up to N slots by queueing empty
WAITING trials; workers only ever *claim* a WAITING trial (studies.liveness: an atomic storage update)
and never ask Optuna for a fresh one, so no number of workers can overshoot N. On PostgreSQL that lock is an
advisory lock held by a connection, and a connection the server drops (a failover, `pg_terminate_backend`)
releases it mid top-up: two workers can then both queue the missing slots. So a claimed empty slot is
checked once more (`surplus`): slots are ranked by the trial they stand for (a retry by the trial it retries),
and one with N slots ranked before it is withdrawn unstarted (`withdraw`: FAIL with `SURPLUS`, counted
nowhere). A failed trial that was re-queued (a retry carries its number in `retry_history`) does not count as
a slot of its own, and neither does a trial that recorded a duplicate proposal (outcome "reused") or one more
seed of a trained trial (`seeds = "auto"`, studies.seeding): `--trials N` means N distinct architectures.

The dedup index: study system attrs `attnas:spec:<spec_id>` = [trial number, trial id] of the trial that owns the
spec (trains it, or trained it). `take` reads and writes it under one lock, so two workers proposing the same
spec at once never both train it; one read of the study's system attrs replaces a scan of every COMPLETE
trial. That lock is the journal's own on a journal file (an `exclusive` block, studies.journal: the index
entry and the trial's first writes are one append) and `lock` elsewhere. Workers are numbered in the order
they join (`attnas:workers`), which seeds their samplers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from .environment import ENV_KEY
from .journal import AttnasJournalStorage, exclusive
from .storage import StorageInfo, connect_args, mask
from .transient import call

RECORD = "attnas"  # the trial's one user attr (docs/CONTRACT.md)
SPEC_KEY = "attnas:spec:"
WORKERS_KEY = "attnas:workers"
#: Trial system attr of a queued slot withdrawn unstarted because the study already held its N slots.
SURPLUS = "attnas:surplus"
#: User attr of a queued extra-seed trial (studies.seeding): {"trial": number it seeds, "seed": training seed}.
SEED_OF = "attnas.seed_of"


def retried_numbers(trials: list[optuna.trial.FrozenTrial]) -> set[int]:
    """Trials that failed and were re-queued (their retry carries them in system_attrs.retry_history)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


def reused(trial: FrozenTrial) -> bool:
    """A trial that recorded a proposal the study already had (not a slot of its own)."""
    return (trial.user_attrs.get(RECORD) or {}).get("outcome") == "reused"


def seed_jobs(trials: list[FrozenTrial]) -> dict[int, tuple[int, int]]:
    """Extra-seed trials -> (trial number they seed, training seed): those queued with SEED_OF and their
    retries (a retry copies only params, but names the trials it retries in `retry_history`)."""
    queued = {t.number: t.user_attrs[SEED_OF] for t in trials if isinstance(t.user_attrs.get(SEED_OF), dict)}
    out = {}
    for t in trials:
        job = queued.get(t.number) or next((queued[n] for n in t.system_attrs.get("retry_history") or ()
                                            if n in queued), None)
        if job is not None:
            out[t.number] = (int(job["trial"]), int(job["seed"]))
    return out


def slots(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that hold a slot: every trial except those retried by a later one, recorded duplicates,
    extra seeds and withdrawn surplus slots."""
    retried = retried_numbers(trials)
    seeds = seed_jobs(trials)
    return [t for t in trials if t.number not in retried and not reused(t) and t.number not in seeds
            and not t.system_attrs.get(SURPLUS)]


def planned(study: optuna.Study) -> int:
    """How many slots the study holds (`slots`)."""
    return len(slots(study.get_trials(deepcopy=False)))


def origin(trial: FrozenTrial) -> int:
    """The number of the trial a slot stands for: its own, or the first attempt's for a retry."""
    return min([trial.number, *trial.system_attrs.get("retry_history", [])])


def surplus(study: optuna.Study, trial: optuna.Trial, total: int) -> bool:
    """Whether a claimed trial is a slot beyond the study's `total` (see the module doc): `total` slots stand
    for earlier trials. Every worker ranks the same way, so exactly the first `total` slots are kept."""
    if trial.number < total:
        return False  # fewer than `total` trials come before it: no listing of the study on the common claim
    trials = study.get_trials(deepcopy=False)
    this = next(t for t in trials if t._trial_id == trial._trial_id)
    if this.params or this.number in seed_jobs(trials):
        return False  # a retry or an extra seed: its slot was counted when it was first queued
    first = origin(this)
    return sum(1 for t in slots(trials) if origin(t) < first) >= total


def withdraw(storage: Any, trial: optuna.Trial) -> None:
    """End a claimed, unstarted surplus slot: FAIL marked `SURPLUS`, so no count, front or retry sees it."""
    storage.set_trial_system_attr(trial._trial_id, SURPLUS, True)
    storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)


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

        key = {"k": "attnas:" + name}
        conn = call(_advisory_locked, lock_engine(info, storage), key, what=f"storage {mask(info.url)} (lock)")
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # a dropped connection has released its lock already
                conn.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), key)
            with contextlib.suppress(Exception):
                conn.close()
    else:
        yield


def dedup_lock(info: StorageInfo, storage: Any, name: str) -> contextlib.AbstractContextManager[None]:
    """The lock the dedup index is read and written under: the journal's own on a journal file (an
    `exclusive` block, whose writes are one append), `lock` elsewhere."""
    return storage.exclusive() if isinstance(storage, AttnasJournalStorage) else lock(info, storage, name)


_LOCK_ENGINES: dict[int, Any] = {}


def _advisory_locked(engine: Any, key: dict[str, str]) -> Any:
    """A connection holding the advisory lock `key` (a session lock: released when the connection closes)."""
    from sqlalchemy import text

    conn = engine.connect()
    try:
        conn.execute(text("SELECT pg_advisory_lock(hashtext(:k))"), key)
    except BaseException:
        with contextlib.suppress(Exception):
            conn.close()
        raise
    return conn


def lock_engine(info: StorageInfo, storage: Any) -> Any:
    """One pooled connection per process for advisory locks, apart from the storage's own small pool.

    Taking it from the storage's pool (1 + 2 overflow) would open and close an overflow connection on every
    lock, ~20 ms each on PostgreSQL; a worker holds two connections instead of one.
    """
    if id(storage) not in _LOCK_ENGINES:
        from sqlalchemy import create_engine

        _LOCK_ENGINES[id(storage)] = create_engine(storage.engine.url, pool_size=1, max_overflow=0,
                                                   pool_pre_ping=True, connect_args=connect_args(info))
    return _LOCK_ENGINES[id(storage)]


def study_id(storage: Any, study: optuna.Study) -> int:
    return storage.get_study_id_from_name(study.study_name)


def owners(storage: Any, sid: int) -> dict[str, tuple[int, int]]:
    """The dedup index: spec id -> (trial number, trial id) of the trial that owns it."""
    attrs = storage.get_study_system_attrs(sid)
    return {k[len(SPEC_KEY):]: (v[0], v[1]) for k, v in attrs.items() if k.startswith(SPEC_KEY)}


def architectures(storage: Any, study: optuna.Study) -> int:
    """Distinct architectures the study holds (its dedup index; an extra seed's key names its owner's)."""
    return len({k.split(":seed")[0] for k in owners(storage, study_id(storage, study))})


def take(info: StorageInfo, storage: Any, study: optuna.Study, spec_id: str, trial: optuna.Trial) -> FrozenTrial | None:
    """Make `trial` the owner of `spec_id`, or return the trial that already owns it (RUNNING or finished).

    A spec whose owner failed is free again (a retry of a killed trial takes its spec back this way).
    """
    with taking(info, storage, study, spec_id, trial) as owner:
        return owner


@contextlib.contextmanager
def taking(info: StorageInfo, storage: Any, study: optuna.Study, spec_id: str,
           trial: optuna.Trial) -> Iterator[FrozenTrial | None]:
    """`take`, with the block as the same step: on a journal file (the trial's own storage) the block runs inside
    the lock, so its writes (the trial's constraints and first record) are one append with the index entry;
    elsewhere the block runs once the lock is released."""
    sid = study_id(storage, study)
    inside = isinstance(storage, AttnasJournalStorage) and trial.storage is storage
    with dedup_lock(info, storage, study.study_name):
        owner = _take(storage, sid, spec_id, trial)
        if inside:
            yield owner
    if not inside:
        yield owner


def _take(storage: Any, sid: int, spec_id: str, trial: optuna.Trial) -> FrozenTrial | None:
    """The read-check-write of the index, under the caller's lock."""
    owner = owners(storage, sid).get(spec_id)
    if owner is not None and owner[1] != trial._trial_id:
        earlier = storage.get_trial(owner[1])
        if earlier.state != TrialState.FAIL:
            return earlier
    storage.set_study_system_attr(sid, SPEC_KEY + spec_id, [trial.number, trial._trial_id])
    return None


def index_existing(info: StorageInfo, storage: Any, study: optuna.Study) -> int:
    """Index the specs of a study made before the index existed (once: a no-op when it is there)."""
    sid = study_id(storage, study)
    if owners(storage, sid) or not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return 0
    with dedup_lock(info, storage, study.study_name):
        done = 0
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
            spec_id = (t.user_attrs.get(RECORD) or {}).get("spec_id") or t.user_attrs.get("spec_id")
            if spec_id and not reused(t) and t.user_attrs.get("reused_from") is None:
                storage.set_study_system_attr(sid, SPEC_KEY + spec_id, [t.number, t._trial_id])
                done += 1
    return done


def join(info: StorageInfo, storage: Any, study: optuna.Study, env: dict[str, Any] | None = None) -> int:
    """This worker's number (0 for the first worker of the study, then 1, 2, ...).

    With `env` (studies.environment.environment()), the worker's environment is stored with its number as
    `attnas:env:<number>`, in the same step: one append on a journal file.
    """
    sid = study_id(storage, study)
    with lock(info, storage, study.study_name), exclusive(storage):
        number = int(storage.get_study_system_attrs(sid).get(WORKERS_KEY, 0))
        storage.set_study_system_attr(sid, WORKERS_KEY, number + 1)
        if env is not None:
            storage.set_study_system_attr(sid, ENV_KEY + str(number), {**env, "worker": number})
    return number
