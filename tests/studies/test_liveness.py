"""The heartbeat thread (studies.liveness): it outlives failing beats, and it tells a worker when another
worker failed its trial, so training stops (`Lease`). In-process, on a real journal file, beats 20 per second."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from studies import liveness as lv
from studies import storage as st


@pytest.fixture
def claimed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A function(liveness class) -> (liveness, study, trial): one trial claimed, beats every 0.05 s."""
    monkeypatch.setattr(st, "HEARTBEAT_S", 0.05)

    def make(kind: type[lv.Liveness] = lv.JournalLiveness):
        storage = st.open_storage(st.parse(f"journal://{tmp_path}/live.log"))
        study = optuna.create_study(study_name="live", storage=storage)
        study.enqueue_trial({})
        liveness = kind(storage)
        trial = liveness.claim(study)
        assert trial is not None
        return liveness, study, trial

    return make


class Flaky(lv.JournalLiveness):
    """Its first 3 beats fail as a dropped connection does after the storage's retries; then beats land."""

    def __init__(self, storage) -> None:
        super().__init__(storage)
        self.calls, self.landed = 0, threading.Event()

    def beat(self, trial_id: int) -> None:
        self.calls += 1
        if self.calls <= 3:
            raise optuna.exceptions.StorageInternalError("server closed the connection unexpectedly")
        super().beat(trial_id)
        if self.calls >= 5:
            self.landed.set()


def test_failing_beats_neither_end_the_thread_nor_give_the_trial_up(claimed) -> None:
    liveness, study, trial = claimed(Flaky)
    with liveness.beating(trial._trial_id) as lease:
        assert liveness.landed.wait(10), f"beats stopped after {liveness.calls} call(s)"
        assert lease.held()
    assert study.trials[0].state == TrialState.RUNNING
    assert lv.HEARTBEAT_ATTR in study.trials[0].system_attrs  # the late beats were written


def test_a_trial_failed_by_another_worker_is_lost_at_the_next_beat(claimed) -> None:
    liveness, study, trial = claimed()
    with liveness.beating(trial._trial_id) as lease:
        assert lease.held()
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)  # what fail_stale does
        started = time.monotonic()
        assert lease.lost.wait(5)
        assert time.monotonic() - started < 1.0 and not lease.held()


def test_a_worker_whose_beats_stalled_past_the_grace_asks_the_storage(claimed, monkeypatch) -> None:
    """A frozen process (SIGSTOP) wakes before its heartbeat thread has run: `held` looks at the storage
    itself once no beat landed for longer than the grace period, so no step or checkpoint runs on a lost trial."""
    monkeypatch.setattr(st, "HEARTBEAT_S", 3600)  # the heartbeat thread never gets to beat here
    liveness, study, trial = claimed()
    with liveness.beating(trial._trial_id) as lease:
        lease.beat_at -= st.GRACE_S + 1
        assert lease.held()  # still RUNNING: keeps training
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        assert lease.held()  # looked less than a second ago: no storage read per step
        lease.looked_at -= 2
        assert not lease.held() and lease.lost.is_set()
