"""`attnas launch --slurm`: an array of workers on one study, through submitit.

Every array task runs the same worker loop as `attnas worker`, so N tasks share one study and the total
stays exact (see studies.queue). The study must live in a storage every node can reach: PostgreSQL, or a
journal file on shared disk; SQLite on NFS corrupts and locks (Optuna #815, #820, #1300).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import signals
from .config import StudyConfig, StudyError
from .storage import mask, resolve


@dataclass(frozen=True)
class SlurmOptions:
    workers: int = 4
    partition: str | None = None
    time_min: int = 240
    gpus_per_node: int = 1
    cpus_per_task: int = 8
    mem_gb: int = 32
    folder: str = ".attnas/slurm"
    setup: tuple[str, ...] = ()
    log_format: str = "plain"  # what each task's .out file holds: plain lines or JSON lines (studies.logs)


def storage_warning(config: StudyConfig) -> str | None:
    """A warning for storages that break with many nodes (SQLite), else None."""
    info = resolve(config)
    if info.kind == "sqlite":
        return (f"warning: storage {mask(info.url)} is SQLite, which corrupts and locks on shared disks; "
                "use postgresql://... or journal:///shared/path/study.log for cluster workers")
    return None


def run_worker(config_dict: dict[str, Any], source: str | None, log_format: str = "plain") -> int:
    """What each array task runs (pickled by submitit): one worker loop, logging each trial and epoch as a
    plain line (or a JSON line) on stdout, the task's `.out` file; returns how many trials it ran."""
    from .config import from_dict
    from .logs import Lines, work_logged
    from .worker import start

    config = from_dict(config_dict, source=source)
    ctx, study = start(config, join=True)
    return work_logged(ctx, study, Lines(None, "json" if log_format == "json" else "plain")).ran


def run_task(config_dict: dict[str, Any], source: str | None, log_format: str = "plain") -> int | None:
    """What an array task runs: `run_worker`, stopping cleanly on Slurm's signals (see `stop_on_signals`).

    Returns the number of trials run, or None when a signal stopped the task; after the time-limit warning
    (USR2) the task has first asked Slurm to requeue it, so it comes back with a fresh time limit.
    """
    caught = stop_on_signals()
    try:
        return run_worker(config_dict, source, log_format)
    except KeyboardInterrupt:
        if not caught:
            raise
    name = signal.Signals(caught[0]).name
    if caught[0] == signal.SIGUSR2 and requeue_self():
        print(f"attnas: {name} (time limit near): the running trial is queued again; this task is requeued",
              file=sys.stderr, flush=True)
    else:
        print(f"attnas: {name}: the running trial is queued again; this task stops", file=sys.stderr, flush=True)
    return None


def stop_on_signals() -> list[int]:
    """Make SIGTERM and SIGUSR2 stop the worker the way Ctrl-C stops `attnas worker`; returns the signals seen.

    Why replace submitit's handlers: it ignores SIGTERM ("bypass"), so a cancelled, preempted or timed-out task
    died of the SIGKILL that follows and its trial stayed RUNNING until the heartbeat grace (ATTNAS_GRACE_S);
    and on USR2 it raises an error into whatever is running unless the function is checkpointable. Here the
    first signal raises KeyboardInterrupt, so the worker fails the trial as "interrupted" and queues it again
    at once (its checkpoint stays in the run folder, so whoever claims it resumes at the last epoch); later
    signals (Slurm sends SIGTERM after USR2 and when it requeues) are only noted, so the re-queue is never cut
    short. A stop the interpreter swallows is raised again at the worker's next epoch (studies.signals).
    """
    return signals.stop_on((signal.SIGTERM, signal.SIGUSR2), every=False)


def requeue_self() -> bool:
    """Ask Slurm to requeue this array task (pending again, a fresh time limit); False when it cannot."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    job = f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    proc = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    if proc.returncode:
        print(f"attnas: could not requeue {job}: {proc.stderr.strip()}", file=sys.stderr, flush=True)
    return proc.returncode == 0


def signal_delay_s(time_min: int) -> int:
    """How long before the time limit Slurm sends USR2: 90 s, or a quarter of a short limit."""
    return min(90, time_min * 60 // 4)


def _parameters(options: SlurmOptions, name: str) -> dict[str, Any]:
    params: dict[str, Any] = {
        "job_name": f"attnas-{name}", "time": options.time_min, "cpus_per_task": options.cpus_per_task,
        "mem": f"{options.mem_gb}GB", "ntasks_per_node": 1, "array_parallelism": options.workers,
        "signal_delay_s": signal_delay_s(options.time_min), "additional_parameters": {"requeue": True},
    }
    if options.gpus_per_node:  # --gpus 0: no GPU request at all (a CPU partition may have no GRES)
        params["gpus_per_node"] = options.gpus_per_node
    if options.partition:
        params["partition"] = options.partition
    if options.setup:
        params["setup"] = list(options.setup)
    return params


def _executor(folder: Path, dry_run: bool) -> Any:
    """A SlurmExecutor; for a dry run, one that does not insist on finding `srun` on this machine."""
    from submitit import SlurmExecutor

    if not dry_run:
        try:
            return SlurmExecutor(folder=folder)
        except RuntimeError as exc:
            raise StudyError(f"{exc}; run `attnas launch` on a Slurm login node, or add --dry-run") from None

    class DryRun(SlurmExecutor):
        @classmethod
        def affinity(cls) -> int:
            return 1

    return DryRun(folder=folder)


def sbatch_script(config: StudyConfig, options: SlurmOptions) -> str:
    """The sbatch script `launch` would submit (submitit writes the same text for the array job)."""
    executor = _executor(Path(options.folder), dry_run=True)
    executor.update_parameters(**_parameters(options, config.name))
    executor.parameters["map_count"] = options.workers
    return executor._make_submission_file_text(executor._submitit_command_str, "dry-run")


def launch(config: StudyConfig, options: SlurmOptions) -> list[str]:
    """Submit `options.workers` array tasks; returns their Slurm job ids."""
    executor = _executor(Path(options.folder), dry_run=False)
    executor.update_parameters(**_parameters(options, config.name))
    jobs = executor.map_array(run_task, [config.to_dict()] * options.workers,
                              [config.source] * options.workers, [options.log_format] * options.workers)
    return [job.job_id for job in jobs]
