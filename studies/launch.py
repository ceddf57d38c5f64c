"""`attnas launch --slurm`: an array of workers on one study, through submitit.

Every array task runs the same worker loop as `attnas worker`, so N tasks share one study and the total
stays exact (see studies.queue). The study must live in a storage every node can reach: PostgreSQL, or a
journal file on shared disk; SQLite on NFS corrupts and locks (Optuna #815, #820, #1300).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def _parameters(options: SlurmOptions, name: str) -> dict[str, Any]:
    params: dict[str, Any] = {
        "job_name": f"attnas-{name}", "time": options.time_min, "gpus_per_node": options.gpus_per_node,
        "cpus_per_task": options.cpus_per_task, "mem": f"{options.mem_gb}GB", "ntasks_per_node": 1,
        "array_parallelism": options.workers,
    }
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
    jobs = executor.map_array(run_worker, [config.to_dict()] * options.workers,
                              [config.source] * options.workers, [options.log_format] * options.workers)
    return [job.job_id for job in jobs]
