"""`attnas launch --slurm` on a real Slurm cluster (tests/slurm/conftest.py): array tasks finish a study on
PostgreSQL and on a journal file; a cancelled, a requeued and a timed-out task lose nothing and train nothing
twice; `attnas status` names the host and Slurm array task running each trial.

The tasks get the tests' environment through sbatch (it exports the submitting environment): ATTNAS_CACHE,
WANDB_MODE, OMP_NUM_THREADS=1 and a fast heartbeat. Every wait is on a storage, checkpoint or Slurm state.
"""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from studies import storage as st
from studies.queue import reused
from trainer.checkpoint import FILE, load_checkpoint

#: One cluster for the module's tests, on one xdist worker (the cluster fixture is per session and process).
pytestmark = pytest.mark.xdist_group("slurm")

FAST = {"ATTNAS_HEARTBEAT_S": "1", "ATTNAS_GRACE_S": "8"}


def _study(tiny_study, url: str, *, trials: int, epochs: int = 1, images: int = 12) -> Path:
    """The tiny digits study; `images` per class makes an epoch long enough to stop a task mid-trial."""
    path = tiny_study(url, trials=trials, epochs=epochs)
    path.write_text(path.read_text().replace("train_per_class = 12", f"train_per_class = {images}"))
    return path


def _launch(attnas, path: Path, cwd: Path, *, workers: int, time_min: int = 10) -> str:
    """`attnas launch --slurm` from `cwd` (the tasks' working folder); returns the array job id."""
    proc = attnas("launch", str(path), "--slurm", "--workers", str(workers), "--cpus", "1", "--gpus", "0",
                  "--mem-gb", "1", "--time-min", str(time_min), "--folder", str(cwd / "slurm"), cwd=cwd, **FAST)
    assert proc.returncode == 0, proc.stderr
    ids = re.search(r"submitted (\d+) worker\(s\): (.+)", proc.stdout)
    assert ids and int(ids[1]) == workers, proc.stdout
    return ids[2].split(",")[0].split("_")[0]


def _open(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=st.open_storage(st.parse(url)))


def _exact(study: optuna.Study, n: int) -> list[FrozenTrial]:
    """N COMPLETE slots, N distinct architectures, none trained twice, nothing left queued or running."""
    trials = study.get_trials()
    slots = [t for t in trials if t.state == TrialState.COMPLETE and not reused(t)]
    assert len(slots) == n
    assert len({t.user_attrs["attnas"]["spec_id"] for t in slots}) == n
    trained = [t.user_attrs["attnas"]["spec_id"] for t in slots if t.user_attrs["attnas"]["outcome"] == "trained"]
    assert len(trained) == len(set(trained))
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    return slots


def _task(trial: FrozenTrial) -> str:
    """`<array job>_<task>` of the Slurm task that ran `trial` (its worker identity)."""
    slurm = trial.user_attrs["attnas"]["worker"]["slurm"]
    return f"{slurm['array_job']}_{slurm['array_task']}"


def _training(url: str, name: str, runs: Path) -> tuple[FrozenTrial, int] | None:
    """The running trial and its checkpoint's epoch, once it has checkpointed an epoch (one trial studies)."""
    try:
        running = _open(url, name).get_trials(states=(TrialState.RUNNING,))
    except KeyError:  # the study is not created yet
        return None
    if not running or "attnas" not in running[0].user_attrs:
        return None
    state = next((load_checkpoint(p) for p in runs.glob(f"*/{FILE}")), None)
    return (running[0], state["epoch"]) if state and state["epoch"] >= 1 else None


def _checkpoint_epoch(runs: Path) -> int:
    return max(load_checkpoint(p)["epoch"] for p in runs.glob(f"*/{FILE}"))


def test_array_tasks_finish_a_study_on_postgresql_and_a_journal(slurm, tiny_study, attnas, tmp_path, request):
    urls = [f"journal://{tmp_path}/study.log"]
    try:
        urls.append(request.getfixturevalue("pg_url"))
    except pytest.skip.Exception as skipped:
        print(f"PostgreSQL case skipped: {skipped}")
    jobs = []
    for url in urls:  # both arrays at once: the cluster runs them side by side
        path = _study(tiny_study, url, trials=3)
        jobs.append((url, path.stem, _launch(attnas, path, tmp_path, workers=3)))
    for url, name, array in jobs:
        slurm.until(lambda array=array: not slurm.active(array), f"array job {array} to end", 240)
        slots = _exact(_open(url, name), 3)
        assert {_task(t).split("_")[0] for t in slots} == {array}  # trained by this array's tasks
        # sacct needs slurmdbd (MySQL); the completion log is slurmctld's own record of each task's end
        assert slurm.ended(array) == {f"{array}_{i}": ["COMPLETED"] for i in range(3)}


def test_cancelled_task_trial_resumes_in_another_task(slurm, tiny_study, attnas, tmp_path):
    url = f"journal://{tmp_path}/study.log"
    epochs = 6
    path = _study(tiny_study, url, trials=1, epochs=epochs, images=120)
    array = _launch(attnas, path, tmp_path, workers=2)  # one trains the one trial, the other waits for it
    runs = tmp_path / ".attnas" / path.stem / "runs"
    trial, _ = slurm.until(lambda: _training(url, path.stem, runs), "a trial to checkpoint an epoch", 180)
    task = _task(trial)
    status = attnas("status", str(path), cwd=tmp_path)
    host = trial.user_attrs["attnas"]["worker"]["host"]
    assert f"trial {trial.number} running on {host} slurm {task}: " in status.stdout, status.stdout

    slurm.run("scancel", task)
    slurm.until(lambda: not slurm.active(array), f"array job {array} to end", 180)
    (slot,) = _exact(_open(url, path.stem), 1)
    interrupted = _open(url, path.stem).trials[trial.number]
    assert interrupted.state == TrialState.FAIL and interrupted.user_attrs["attnas"]["error"] == "interrupted"
    assert slot.system_attrs["failed_trial"] == trial.number and _task(slot) != task
    record = slot.user_attrs["attnas"]
    # resumed at the cancelled task's last checkpoint: epochs trained in all <= epochs + 1 (the one cut short)
    assert record["outcome"] == "trained" and record["epochs"] == epochs and record["start_epoch"] >= 1
    other = f"{array}_{1 - int(task.split('_')[1])}"
    assert slurm.ended(array) == {task: ["CANCELLED"], other: ["COMPLETED"]}
    assert "SIGTERM: the running trial is queued again" in (tmp_path / "slurm" / f"{task}_0_log.err").read_text()
