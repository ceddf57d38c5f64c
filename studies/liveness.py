"""Heartbeats and stale-trial recovery: how a dead worker's trial is found and run again.

One small interface (`Liveness`: claim, beating, recover) with one implementation per storage kind, chosen
once from the URL by `for_storage`:
- SQL storages (SQLite, PostgreSQL, MySQL) use Optuna's own heartbeat (`record_heartbeat`,
  `fail_stale_trials`);
- journal files have no heartbeat in Optuna, so attnas keeps one in the trial system attr `attnas:heartbeat`.

A claimed trial is never RUNNING without a first beat, so a worker that dies right after its claim leaves a
trial whose heartbeat goes stale (and is retried) rather than one RUNNING forever: SQL storages beat *before*
they mark the trial RUNNING (Optuna fails only trials with a heartbeat row); on a journal file the claim's
own RUNNING record is the first beat (its `datetime_start`, read until the trial has a heartbeat attr). A
stale trial is failed and re-queued by `retry`: a WAITING copy with the same params and nothing else of the
dead trial (no old heartbeat, no constraints, no user attrs), so the retry starts fresh; why the dead one
failed (when its worker last beat, where it ran) is stored for `attnas status` (`note_failure`). Recovery runs at
most once per heartbeat interval: a heartbeat cannot go stale faster than that. While trials run, one
heartbeat thread per worker (started with its first trial, kept) beats each of them every heartbeat interval.

A beat that fails (a dropped connection, a database in a connection storm) is retried by the storage
(studies.transient) and, failing that, at the next interval: the thread never dies and never gives a trial
up on an error, only when the storage says the trial is no longer RUNNING. Then another worker declared it
dead (a frozen or unreachable worker) and queued its retry, so the `Lease` of the block is marked lost and
the worker stops training it (trainer's `stop` hook) instead of writing into a run folder the retry owns.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import IntegrityError

from . import storage as st
from .environment import where
from .records import ATTR, FAILURE_KEY

HEARTBEAT_ATTR = "attnas:heartbeat"


def retry(study: optuna.Study, failed: FrozenTrial) -> bool:
    """Queue a fresh WAITING copy of `failed` (same params); False once it was retried MAX_RETRY times.

    Mirrors Optuna's RetryHeartbeatStaleTrialCallback (`failed_trial`, `retry_history`, which studies.queue
    reads to count slots) but copies only the params: the dead trial's heartbeat would make the retry look
    stale at once, and its constraints would make `set_constraint` warn and keep the old values.
    """
    history = [*failed.system_attrs.get("retry_history", []), failed.number]
    if len(history) > st.MAX_RETRY:
        return False
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=failed.params, distributions=failed.distributions,
        system_attrs={"failed_trial": failed.number, "retry_history": history},
    ))
    return True


def stale_reason(trial: FrozenTrial, last_beat: float | None) -> str:
    """Why a stale trial was failed, as `attnas status` shows it: when its worker last beat, and where it ran."""
    ran = where((trial.user_attrs.get(ATTR) or {}).get("worker"))
    when = f"last beat {time.time() - last_beat:.0f} s ago" if last_beat is not None else \
        f"no beat for over {st.GRACE_S} s"
    return (f"its worker's heartbeat stopped ({when}{'' if ran == '-' else ' on ' + ran}; grace {st.GRACE_S} s): "
            "the worker was killed, lost its node or hung")


def note_failure(study: optuna.Study, number: int, reason: str) -> None:
    """Store why trial `number` failed in a study system attr (records.FAILURE_KEY): unlike the trial's own attrs,
    it can still be written once the trial is FAIL, and it is a few hundred bytes."""
    study._storage.set_study_system_attr(study._study_id, f"{FAILURE_KEY}{number}", reason)


def note_stale(study: optuna.Study, trial: FrozenTrial, last_beat: float | None) -> None:
    """`note_failure` for a trial failed as stale; a storage that refuses it costs the reason, never the retry."""
    with contextlib.suppress(Exception):
        note_failure(study, trial.number, stale_reason(trial, last_beat))


@dataclass
class Lease:
    """A trial this worker is running, as far as the storage says: `lost` once another worker failed it.

    `held` is what training asks before every step and checkpoint: the flag the heartbeat thread sets, plus,
    when no beat has landed for longer than the grace period (this process was frozen, or the database
    unreachable), one look at the storage itself: the trial may have been declared dead meanwhile, and the
    heartbeat thread may not have run yet.
    """

    trial_id: int
    liveness: Liveness
    lost: threading.Event = field(default_factory=threading.Event)
    beat_at: float = field(default_factory=time.monotonic)  # when a beat last landed (monotonic seconds)
    looked_at: float = -float("inf")

    def held(self) -> bool:
        now = time.monotonic()
        if not self.lost.is_set() and now - self.beat_at > st.GRACE_S and now - self.looked_at > 1.0:
            self.looked_at = now
            with contextlib.suppress(Exception):  # unreachable: cannot tell, keep training
                if not self.liveness.running(self.trial_id):
                    self.lost.set()
        return not self.lost.is_set()


class Liveness(ABC):
    """Claims trials, keeps them alive while they run, and recovers those whose worker died."""

    def __init__(self, storage: optuna.storages.BaseStorage) -> None:
        self.storage = storage
        self._last_recovery = -float("inf")
        self._waiting: list[tuple[int, bool]] = []  # (trial id, has params), oldest last
        self._beating: dict[int, Lease] = {}  # trials inside `beating` blocks
        self._beat_lock = threading.Lock()  # held while the heartbeat thread beats, and to change _beating
        self._warned_at = -float("inf")
        self._thread: threading.Thread | None = None

    @abstractmethod
    def beat(self, trial_id: int) -> None:
        """Record that the trial's worker is alive now."""

    def running(self, trial_id: int) -> bool:
        """Whether the trial is still RUNNING in the storage (False: finished, or failed by another worker)."""
        return self.storage.get_trial(trial_id).state == TrialState.RUNNING

    @abstractmethod
    def fail_stale(self, study: optuna.Study) -> list[int]:
        """Fail the trials whose heartbeat is older than the grace period and retry them; their numbers."""

    def before_claim(self, trial_id: int) -> None:
        """What a trial needs before it is marked RUNNING, so that its worker's death is noticed: a beat."""
        self.beat(trial_id)

    def claim(self, study: optuna.Study, *, fresh: bool = True) -> optuna.Trial | None:
        """Take one WAITING trial (atomically: the storage refuses a trial another worker took first).

        The WAITING trials are listed once and then taken from that list in order, so a claim costs
        `before_claim` and a state update, not a listing of every queued trial; the list is read again only
        when it runs out (retries queued meanwhile are found then). With `fresh=False` only retries (WAITING
        trials that already carry params) are taken: the space is exhausted, so an empty slot could only
        propose an architecture the study already has.
        """
        for _ in range(2):
            if not self._waiting:
                self._waiting = [(t._trial_id, bool(t.params)) for t in
                                 study.get_trials(deepcopy=False, states=(TrialState.WAITING,))]
                self._waiting.reverse()  # pop() from the end takes the oldest first
            while self._waiting:
                trial_id, has_params = self._waiting.pop()
                if not fresh and not has_params:
                    continue
                try:
                    self.before_claim(trial_id)
                    if self.storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                        return optuna.Trial(study, trial_id)
                except optuna.exceptions.UpdateFinishedTrialError:
                    continue
                except IntegrityError:  # two workers inserting the same heartbeat row: the other one claims it
                    continue
        return None

    def recover(self, study: optuna.Study, *, force: bool = False) -> list[int]:
        """`fail_stale`, at most once per heartbeat interval (unless `force`); the numbers it failed."""
        now = time.monotonic()
        if not force and now - self._last_recovery < st.HEARTBEAT_S:
            return []
        self._last_recovery = now
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return self.fail_stale(study)

    @contextlib.contextmanager
    def beating(self, trial_id: int) -> Iterator[Lease]:
        """Beat every HEARTBEAT_S seconds while the block runs, so other workers can tell it is alive.

        The beats come from one thread per Liveness, started by the first block and kept for the next ones
        (a thread per trial cost a start and a join per trial). A trial's first beat from it comes within
        HEARTBEAT_S (its claim beat first); none comes after the block ends (leaving it waits for a beat
        in flight). The block gets the trial's `Lease`: lost once another worker failed the trial.
        """
        lease = Lease(trial_id, self)
        with self._beat_lock:
            self._beating[trial_id] = lease
            if self._thread is None:
                self._thread = threading.Thread(target=self._beat_loop, daemon=True, name="attnas-heartbeat")
                self._thread.start()
        try:
            yield lease
        finally:
            with self._beat_lock:
                self._beating.pop(trial_id, None)

    def _beat_loop(self) -> None:
        """Beat forever: no error ends this thread (a dead heartbeat thread let live trials be declared dead)."""
        while True:
            time.sleep(st.HEARTBEAT_S)
            with self._beat_lock:
                for lease in list(self._beating.values()):
                    try:
                        self._beat_once(lease)
                    except Exception as exc:  # still failing after the storage's retries: try at the next beat
                        self._warn(f"heartbeat of trial id {lease.trial_id} failed ({type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else ''}); trying again")

    def _beat_once(self, lease: Lease) -> None:
        """One beat, then the trial's state: a trial no longer RUNNING was failed elsewhere (or finished)."""
        try:
            self.beat(lease.trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:  # a journal refuses a finished trial's beat
            still = False
        else:
            lease.beat_at = time.monotonic()
            still = self.running(lease.trial_id)
        if not still:
            lease.lost.set()
            self._beating.pop(lease.trial_id, None)

    def _warn(self, line: str) -> None:
        """At most one heartbeat warning a minute on stderr."""
        now = time.monotonic()
        if now - self._warned_at >= 60:
            self._warned_at = now
            print(f"warning: {line}", file=sys.stderr, flush=True)


class SqlLiveness(Liveness):
    """Optuna's RDB heartbeat; its stale-trial callback is set to `retry`, so retries start fresh."""

    def __init__(self, storage: optuna.storages.RDBStorage) -> None:
        super().__init__(storage)
        self._failed: list[int] = []

        def callback(study: optuna.Study, trial: FrozenTrial) -> None:
            self._failed.append(trial.number)
            note_stale(study, trial, None)  # Optuna keeps the time of the last beat to itself
            retry(study, trial)

        storage.heartbeat_stale_trial_callback = callback

    def beat(self, trial_id: int) -> None:
        self.storage.record_heartbeat(trial_id)

    def fail_stale(self, study: optuna.Study) -> list[int]:
        self._failed = []
        optuna.storages.fail_stale_trials(study)
        return sorted(self._failed)


class JournalLiveness(Liveness):
    """attnas' own heartbeat in a trial system attr; only RUNNING trials are read to find stale ones."""

    def beat(self, trial_id: int) -> None:
        self.storage.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def before_claim(self, trial_id: int) -> None:
        """Nothing: the RUNNING record carries the claim's `datetime_start`, which `fail_stale` reads as its
        first beat (a beat here would be one more locked, fsync'd append per trial)."""

    def fail_stale(self, study: optuna.Study) -> list[int]:
        failed = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            beat = t.system_attrs.get(HEARTBEAT_ATTR)
            if beat is None and t.datetime_start is not None:
                beat = t.datetime_start.timestamp()
            if beat is None or time.time() - beat <= st.GRACE_S:
                continue
            try:
                if self.storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                    note_stale(study, t, beat)
                    retry(study, self.storage.get_trial(t._trial_id))
                    failed.append(t.number)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker failed it first (and queued the retry)
        return failed


def for_storage(info: st.StorageInfo, storage: optuna.storages.BaseStorage) -> Liveness:
    """The liveness of a storage kind, chosen once here."""
    return JournalLiveness(storage) if info.kind == "journal" else SqlLiveness(storage)  # type: ignore[arg-type]
