"""Many `attnas worker` processes on one study (PostgreSQL and a journal file): exactly N trials, none lost,
and a worker killed with SIGKILL mid-trial costs one retry, not a trial."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from studies import storage as st

FAST_HEARTBEAT = {"ATTNAS_HEARTBEAT_S": "1", "ATTNAS_GRACE_S": "4"}


@pytest.fixture(params=["postgresql", "journal"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "journal":
        return f"journal://{tmp_path}/study.log"
    return request.getfixturevalue("pg_url")


def _open(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=st.open_storage(st.parse(url)))


def _finish(workers: list[subprocess.Popen]) -> None:
    for w in workers:
        _, stderr = w.communicate(timeout=120)
        assert w.returncode == 0, stderr


def _check_exact(study: optuna.Study, n: int) -> list[optuna.trial.FrozenTrial]:
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    return trials


def _signal_mid_trial(worker: subprocess.Popen, url: str, name: str, sig: signal.Signals) -> int:
    """Send `sig` to `worker` once it is training a trial (its spec recorded); returns that trial's number."""
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            running = _open(url, name).get_trials(states=(TrialState.RUNNING,))
        except KeyError:
            continue
        if running and "spec" in running[0].user_attrs:
            worker.send_signal(sig)
            return running[0].number
    worker.kill()
    pytest.fail("the worker never started a trial")


@pytest.fixture
def cleanup():
    made: list[tuple[str, str]] = []
    yield made
    for url, name in made:
        if url.startswith("postgresql"):
            with contextlib.suppress(Exception):
                optuna.delete_study(study_name=name, storage=st.open_storage(st.parse(url)))


@pytest.mark.slow
def test_three_workers_finish_exactly_n(storage_url: str, tiny_study, cleanup, attnas_popen) -> None:
    name = f"w3-{uuid.uuid4().hex[:8]}"
    path = tiny_study(storage_url, trials=7, name=name)
    cleanup.append((storage_url, name))
    _finish([attnas_popen("worker", str(path), "--no-wandb", **FAST_HEARTBEAT) for _ in range(3)])
    trials = _check_exact(_open(storage_url, name), 7)
    assert len(trials) == 7  # no failures, no extra trials


@pytest.mark.slow
def test_killed_worker_costs_a_retry_not_a_trial(storage_url: str, tiny_study, cleanup, attnas_popen) -> None:
    name = f"kill-{uuid.uuid4().hex[:8]}"
    path = tiny_study(storage_url, trials=4, epochs=3, name=name)
    cleanup.append((storage_url, name))
    victim = attnas_popen("worker", str(path), "--no-wandb", **FAST_HEARTBEAT)
    killed = _signal_mid_trial(victim, storage_url, name, signal.SIGKILL)
    victim.wait(10)
    assert _open(storage_url, name).trials[killed].state == TrialState.RUNNING  # left behind by the dead worker

    _finish([attnas_popen("worker", str(path), "--no-wandb", **FAST_HEARTBEAT) for _ in range(2)])
    trials = _check_exact(_open(storage_url, name), 4)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [killed]
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == trials[killed].params  # the same architecture, re-run


@pytest.mark.slow
def test_ctrl_c_requeues_the_running_trial_and_a_rerun_resumes(tiny_study, tmp_path: Path, attnas_popen) -> None:
    url = f"sqlite:///{tmp_path}/ctrl-c.db"
    path = tiny_study(url, trials=3, epochs=3, name="ctrl-c")
    worker = attnas_popen("worker", str(path), "--no-wandb", **FAST_HEARTBEAT)
    interrupted = _signal_mid_trial(worker, url, "ctrl-c", signal.SIGINT)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 130 and "run the same command to resume" in stderr
    trials = _open(url, "ctrl-c").get_trials()
    assert trials[interrupted].state == TrialState.FAIL
    assert trials[interrupted].user_attrs["error"] == "interrupted"
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == interrupted]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING

    _finish([attnas_popen("worker", str(path), "--no-wandb", **FAST_HEARTBEAT)])
    trials = _check_exact(_open(url, "ctrl-c"), 3)
    rerun = next(t for t in trials if t.system_attrs.get("failed_trial") == interrupted)
    assert rerun.state == TrialState.COMPLETE and rerun.params == trials[interrupted].params
