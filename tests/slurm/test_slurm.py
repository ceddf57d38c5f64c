"""`attnas launch --slurm` on a real Slurm cluster (tests/slurm/conftest.py): array tasks finish a study on
PostgreSQL and on a journal file; a cancelled, a requeued and a timed-out task lose nothing and train nothing
twice; `attnas status` names the host and Slurm array task running each trial.

The tasks get the tests' environment through sbatch (it exports the submitting environment): ATTNAS_CACHE,
WANDB_MODE, OMP_NUM_THREADS=1 and a fast heartbeat. Every wait is on a storage, checkpoint or Slurm state.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from procs import checkpoint_epoch

from studies import storage as st
from studies.queue import reused
from trainer.checkpoint import FILE, load_checkpoint

#: One cluster for the module's tests, on one xdist worker (the cluster fixture is per session and process).
pytestmark = pytest.mark.xdist_group("slurm")

FAST = {"ATTNAS_HEARTBEAT_S": "1", "ATTNAS_GRACE_S": "8"}


def _study(tiny_study, url: str, *, trials: int, epochs: int = 1, images: int = 12) -> Path:
    """The tiny digits study; `images` per class makes an epoch long enough to stop a task mid-trial."""
    return tiny_study(url, trials=trials, epochs=epochs, train_per_class=images)


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
    """`<array job>_<task>` (or the job id: submitit submits one worker as a plain job) that ran `trial`."""
    slurm = trial.user_attrs["attnas"]["worker"]["slurm"]
    return f"{slurm['array_job']}_{slurm['array_task']}" if "array_job" in slurm else slurm["job"]


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
    epochs = 10
    path = _study(tiny_study, url, trials=1, epochs=epochs, images=120)
    array = _launch(attnas, path, tmp_path, workers=2)  # one trains the one trial, the other waits for it
    runs = tmp_path / ".attnas" / path.stem / "runs"
    trial, _ = slurm.until(lambda: _training(url, path.stem, runs), "a trial to checkpoint an epoch", 180)
    task = _task(trial)
    host = trial.user_attrs["attnas"]["worker"]["host"]
    line = f"trial {trial.number} running on {host} slurm {task}: "
    status = attnas("status", str(path), cwd=tmp_path)  # while the trial trains (epoch 1 of 10 is checkpointed)
    assert line in status.stdout or _open(url, path.stem).trials[trial.number].state != TrialState.RUNNING, \
        status.stdout  # a trial that ended meanwhile would not be listed: then the line is not asked of it

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



class Watch:
    """Polls one task of a one-trial study: records each checkpoint epoch seen and lets a requeued task start
    a few seconds later (Slurm holds a requeued job back about 2 minutes, `BeginTime`; the worker has re-queued
    its trial before: on USR2 before it asks for the requeue, on SIGTERM before it exits and the job leaves the
    node). Not at once: Slurm's hold is there because slurmd revokes the job's credential when the last run
    ends, and a relaunch whose credential is dated the same second is killed ("Job credential revoked") and
    the job ends for good (seen in CI: a relaunch 0.4 s after the USR2 self-requeue). A
    relaunch that failed while the node still cleaned up the last run leaves the job held ("launch failed
    requeued held"): released too, as an operator would. Every pending reason seen is kept for the failure."""

    RELAUNCH_S = 3  # seconds after the requeue: past the second in which the last run's credential was revoked

    def __init__(self, slurm, task: str, runs: Path) -> None:
        self.slurm, self.task, self.runs = slurm, task, runs
        self.epochs: list[int] = []  # checkpoint epochs in the order seen: never going back = never retrained
        self.pending: list[str] = []  # each new "PENDING <reason>" seen, in order
        self.stops = self.since = 0  # stops of the worker seen in its log; len(epochs) at the last one
        self.requeued = False
        self.hurried = False  # this pending spell's begin time is already brought forward

    def epoch(self) -> int:
        epoch = checkpoint_epoch(self.runs)
        if epoch != (self.epochs[-1] if self.epochs else None):
            self.epochs.append(epoch)
        state, _, reason = self.slurm.run("squeue", "-h", "-r", "-j", self.task, "-o", "%T %r").strip().partition(" ")
        if state == "PENDING":
            if not self.pending or self.pending[-1] != reason:
                self.pending.append(reason)
            if reason == "BeginTime" and not self.hurried:  # once per requeue: each update moves it on again
                self.slurm.run("scontrol", "update", f"JobId={self.task}", f"StartTime=now+{self.RELAUNCH_S}")
                self.hurried = True
            elif "held" in reason.lower():
                self.slurm.run("scontrol", "release", self.task)
        else:
            self.hurried = False
        return epoch

    def until(self, check, what: str, timeout: float = 180):
        return self.slurm.until(lambda: (self.epoch(), check())[1], what, timeout)


def test_timed_out_and_requeued_task_resumes_its_trial(slurm, tiny_study, attnas, tmp_path, monkeypatch):
    """One worker with a 2-minute limit, one trial far longer. `scontrol requeue` (SIGTERM) and then the
    time-limit warning (USR2, `--signal=USR2@30` set by launch, which Slurm sends 60-90 s into the job) each
    queue the trial again at once and the task comes back (after USR2 it requeues itself) to resume it from its
    last checkpoint. The trial never ends: the test stops the task once both have happened mid-trial, each
    followed by more epochs, and checks that nothing was lost or trained twice. (With a 1-minute limit the
    warning can come 15 s into the job, before a loaded machine has even imported torch.)"""
    monkeypatch.setenv("ATTNAS_MAX_RETRY", "20")  # a trial longer than the time limit is interrupted each time
    url = f"journal://{tmp_path}/study.log"
    path = _study(tiny_study, url, trials=1, epochs=500, images=60)
    job = _launch(attnas, path, tmp_path, workers=1, time_min=2)  # one worker: a plain job, not an array
    err = tmp_path / "slurm" / f"{job}_0_log.err"
    watch = Watch(slurm, job, tmp_path / ".attnas" / path.stem / "runs")
    log = lambda: err.read_text() if err.exists() else ""  # noqa: E731
    seen: dict[str, int] = {}  # signal -> the epoch it interrupted, for stops of a trial that had trained on

    def progress() -> bool:
        """Note each stop of a trial mid-training; requeue the task by hand once it has trained an epoch."""
        stops = re.findall(r"attnas: (SIG\w+).*: the running trial is queued again", log())
        if len(stops) > watch.stops:
            watch.stops = len(stops)
            if len(watch.epochs) > watch.since + 1:  # this attempt had checkpointed an epoch: mid-trial
                seen.setdefault(stops[-1], watch.epochs[-1])
            watch.since = len(watch.epochs)
        ran = len(watch.epochs) > watch.since + 1  # the attempt after the last stop went on by an epoch
        if ran and not watch.requeued:
            slurm.run("scontrol", "requeue", job)
            watch.requeued = True
        return ran and len(seen) == 2

    try:
        watch.until(progress, "a requeue and a time limit each mid-trial, each followed by more epochs", 400)
    finally:
        print(log(), f"checkpoint epochs seen: {watch.epochs}; interrupted at: {seen}; pending: {watch.pending}")
        print(slurm.run("squeue", "-h", "-r", "-o", "%i %T %r %S %L"))
        print("\n".join((slurm.root / "slurmctld.log").read_text().splitlines()[-60:]))
        slurm.run("scancel", job)
    assert watch.epochs == sorted(watch.epochs)  # each attempt went on from the last, none started over
    assert "SIGUSR2 (time limit near): the running trial is queued again; this task is requeued" in log()
    study = _open(url, path.stem)

    def settled() -> bool:  # failing a trial and queueing its retry are two writes: wait for both, not the first
        trials = study.get_trials()
        retried = {t.system_attrs.get("failed_trial") for t in trials}
        return all(t.state != TrialState.RUNNING and (t.state != TrialState.FAIL or t.number in retried)
                   for t in trials)

    slurm.until(settled, "the cancelled task's trial failed and queued again", 60)
    chain = sorted(study.trials, key=lambda t: t.number)  # each attempt a FAIL trial, its retry the next
    assert len(chain) >= 3 and {t.state for t in chain[:-1]} == {TrialState.FAIL}
    assert {t.user_attrs["attnas"]["error"] for t in chain[:-1]} == {"interrupted"}
    assert chain[-1].state == TrialState.WAITING  # queued again after the scancel: nothing lost
    assert all(t.system_attrs.get("failed_trial") == prev.number for prev, t in itertools.pairwise(chain))
    assert {_task(t) for t in chain[:-1]} == {job}  # one Slurm job ran every attempt
