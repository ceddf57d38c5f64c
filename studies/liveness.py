"""Heartbeats and stale-trial recovery: how a dead worker's trial is found and run again.

One small interface (`Liveness`: claim, beating, recover) with one implementation per storage kind, chosen
once from the URL by `for_storage`:
- SQL storages (SQLite, PostgreSQL, MySQL) use Optuna's own heartbeat (`record_heartbeat`,
  `fail_stale_trials`);
- journal files have no heartbeat in Optuna, so attnas keeps one in the trial system attr `attnas:heartbeat`.

Both beat *before* they mark a claimed trial RUNNING, so a worker that dies right after its claim leaves a
trial whose heartbeat goes stale (and is retried) rather than one RUNNING forever. A stale trial is failed
and re-queued by `retry`: a WAITING copy with the same params and nothing else of the dead trial (no old
heartbeat, no constraints, no user attrs), so the retry starts fresh. Recovery runs at most once per
heartbeat interval: a heartbeat cannot go stale faster than that.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import IntegrityError

from . import storage as st

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


class Liveness(ABC):
    """Claims trials, keeps them alive while they run, and recovers those whose worker died."""

    def __init__(self, storage: optuna.storages.BaseStorage) -> None:
        self.storage = storage
        self._last_recovery = -float("inf")
        self._waiting: list[tuple[int, bool]] = []  # (trial id, has params), oldest last

    @abstractmethod
    def beat(self, trial_id: int) -> None:
        """Record that the trial's worker is alive now."""

    @abstractmethod
    def fail_stale(self, study: optuna.Study) -> list[int]:
        """Fail the trials whose heartbeat is older than the grace period and retry them; their numbers."""

    def claim(self, study: optuna.Study, *, fresh: bool = True) -> optuna.Trial | None:
        """Take one WAITING trial (atomically: the storage refuses a trial another worker took first).

        The WAITING trials are listed once and then taken from that list in order, so a claim costs a beat
        and a state update, not a listing of every queued trial; the list is read again only when it runs
        out (retries queued meanwhile are found then). With `fresh=False` only retries (WAITING trials that
        already carry params) are taken: the space is exhausted, so an empty slot could only propose an
        architecture the study already has.
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
                    self.beat(trial_id)
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
    def beating(self, trial_id: int) -> Iterator[None]:
        """Beat every HEARTBEAT_S seconds while the block runs, so other workers can tell it is alive."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(st.HEARTBEAT_S):
                try:
                    self.beat(trial_id)
                except Exception:
                    return  # the trial was finished (or failed as stale) elsewhere: nothing left to keep alive

        thread = threading.Thread(target=loop, daemon=True, name=f"attnas-heartbeat-{trial_id}")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


class SqlLiveness(Liveness):
    """Optuna's RDB heartbeat; its stale-trial callback is set to `retry`, so retries start fresh."""

    def __init__(self, storage: optuna.storages.RDBStorage) -> None:
        super().__init__(storage)
        self._failed: list[int] = []

        def callback(study: optuna.Study, trial: FrozenTrial) -> None:
            self._failed.append(trial.number)
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
                    retry(study, self.storage.get_trial(t._trial_id))
                    failed.append(t.number)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker failed it first (and queued the retry)
        return failed


def for_storage(info: st.StorageInfo, storage: optuna.storages.BaseStorage) -> Liveness:
    """The liveness of a storage kind, chosen once here."""
    return JournalLiveness(storage) if info.kind == "journal" else SqlLiveness(storage)  # type: ignore[arg-type]
