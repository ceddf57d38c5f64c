"""A PostgreSQL connection storm (`pg_terminate_backend` on a worker's connections every 0.3 s) costs no
worker, declares no live trial dead and trains nothing twice; a worker whose trial another worker did fail
stops training it at its next beat. Real `attnas worker` processes; the storm targets only their connections
(`application_name` attnas:<pid>, studies.storage.connect_args), never this test's or another test's."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from procs import finish

from studies import storage as st
from studies.queue import reused

#: Heartbeat 1 s, grace 4 s: a storm of a few seconds outlasts the grace, so a heartbeat it stopped is noticed.
FAST = {"ATTNAS_HEARTBEAT_S": "1", "ATTNAS_GRACE_S": "4"}


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def study_name(pg_url: str) -> Iterator[str]:
    name = f"storm-{uuid.uuid4().hex[:8]}"
    yield name
    with contextlib.suppress(Exception):
        optuna.delete_study(study_name=name, storage=st.open_storage(st.parse(pg_url)))


def _open(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=st.open_storage(st.parse(url)))


class Storm:
    """Terminate the given pids' attnas connections every `every` s, from this test's own connection."""

    def __init__(self, url: str, pids: list[int], every: float = 0.3) -> None:
        import sqlalchemy

        self.engine = sqlalchemy.create_engine(url, pool_size=1, max_overflow=0)
        self.names = [f"attnas:{pid}" for pid in pids]
        self.every = every
        self.killed: dict[str, int] = dict.fromkeys(self.names, 0)

    def run(self, seconds: float, *, after_each: int = 0, limit_s: float = 90) -> dict[str, int]:
        """Storm for `seconds` once every target had `after_each` connections killed (they may still be
        starting); returns the kills per target."""
        from sqlalchemy import text

        query = text("SELECT application_name, pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE application_name = ANY(:names) AND pid <> pg_backend_pid()")
        started, hit = time.monotonic(), None
        with self.engine.connect() as conn:
            while time.monotonic() - started < limit_s:
                for name, ok in conn.execute(query, {"names": self.names}).all():
                    self.killed[name] += bool(ok)
                conn.commit()
                if hit is None and min(self.killed.values()) >= after_each:
                    hit = time.monotonic()
                if hit is not None and time.monotonic() - hit >= seconds:
                    break
                time.sleep(self.every)
        self.engine.dispose()
        return self.killed


def _training(url: str, name: str, worker, deadline_s: float = 90) -> int:
    """Wait until a trial has its record (training has started); its number."""
    deadline = time.time() + deadline_s
    while time.time() < deadline and worker.poll() is None:
        with contextlib.suppress(KeyError):
            running = [t for t in _open(url, name).get_trials(states=(TrialState.RUNNING,)) if "attnas" in t.user_attrs]
            if running:
                return running[0].number
        time.sleep(0.2)
    worker.kill()
    pytest.fail(f"no trial started training: {worker.communicate()[1] if worker.poll() is not None else ''}")


@pytest.mark.slow
def test_a_storm_during_a_trial_declares_nothing_dead_and_trains_nothing_twice(
        pg_url: str, study_name: str, tiny_study, attnas_popen) -> None:
    """Worker A trains the study's one trial; its connections are killed every 0.3 s for 5 s (longer than the
    4 s grace) while worker B, untouched and with nothing to claim, looks for stale trials every second. The
    trial is never failed or retried and is trained once, from epoch 0 to the end."""
    path = tiny_study(pg_url, trials=1, epochs=80, kinds='["none"]', name=study_name)
    a = attnas_popen("worker", str(path), "--no-wandb", **FAST)
    first = _training(pg_url, study_name, a)
    b = attnas_popen("worker", str(path), "--no-wandb", **FAST)
    killed = Storm(pg_url, [a.pid]).run(5)
    assert sum(killed.values()) >= 3, f"the storm terminated only {killed} connection(s): it missed the worker"
    assert _open(pg_url, study_name).trials[first].state == TrialState.RUNNING, \
        "the trial ended before the storm did (or was declared dead): the storm tested nothing"
    finish(a, b, timeout=180)

    trials = _open(pg_url, study_name).get_trials()
    assert [(t.number, t.state) for t in trials] == [(first, TrialState.COMPLETE)]  # none failed, none retried
    record = trials[0].user_attrs["attnas"]
    assert (record["outcome"], record["start_epoch"], record["epochs"]) == ("trained", 0, 80)
    assert record["threads"] == 1  # the suite's OMP_NUM_THREADS=1 (tests/conftest.py) is respected


@pytest.mark.slow
def test_a_storm_at_worker_start_costs_no_worker(pg_url: str, study_name: str, tiny_study, attnas_popen) -> None:
    """Two workers started into a storm on their own connections: both retry, survive and finish the study."""
    path = tiny_study(pg_url, trials=3, epochs=2, name=study_name)
    workers = [attnas_popen("worker", str(path), "--no-wandb", **FAST) for _ in range(2)]
    killed = Storm(pg_url, [w.pid for w in workers]).run(3, after_each=1)
    assert min(killed.values()) >= 2, f"the storm did not hit both workers: {killed}"
    finish(*workers, timeout=180)
    trials = _open(pg_url, study_name).get_trials()
    slots = [t for t in trials if t.state == TrialState.COMPLETE and not reused(t)]
    assert len(slots) == 3 and len({t.user_attrs["attnas"]["spec_id"] for t in slots}) == 3
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
