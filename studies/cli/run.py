"""Commands that run a study: init, create, worker, search, launch."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import config as cfg
from .. import storage as st
from ..config import StudyError
from .app import LogFormat, Logs, NoWandb, Storage, Trials, _config, app, err, out, require_success
from .read import front_table


@app.command()
def init(path: Annotated[Path, typer.Argument()] = Path("study.toml"),
         example: Annotated[str, typer.Option(help="digits | imagenet100 | imagenet1k-subset")] = "digits",
         force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False) -> None:
    """Write an example study file to edit."""
    if path.exists() and not force:
        raise StudyError(f"{path} exists; choose another path or add --force")
    shutil.copyfile(cfg.example_path(example), path)
    out.print(f"wrote {path}; run: attnas search {path}")


@app.command()
def create(study_file: Path, trials: Trials = None, storage: Storage = None, no_wandb: NoWandb = False) -> None:
    """Create the study, or resume it (idempotent); refuses a changed search space or objectives."""
    config = _config(study_file, trials, storage, no_wandb)  # first: a bad file is refused in a blink

    from ..worker import start  # lazy: torch

    _, study = start(config)
    states = dict(Counter(t.state.name for t in study.get_trials(deepcopy=False)))
    out.print(f"study {config.name!r} in {st.mask(st.resolve(config).url)}: {states}")


@app.command()
def worker(study_file: Path, trials: Trials = None, storage: Storage = None, no_wandb: NoWandb = False,
           log_format: Logs = LogFormat.auto) -> None:
    """Run trials until the study's total is reached (start as many workers as you like)."""
    _work(_config(study_file, trials, storage, no_wandb), log_format.value)


@app.command()
def search(study_file: Path, trials: Trials = None, storage: Storage = None, no_wandb: NoWandb = False,
           report: Annotated[Path | None, typer.Option(help="Where to write the HTML report "
                                                       "(default: .attnas/<study name>/report.html).")] = None,
           log_format: Logs = LogFormat.auto) -> None:
    """Create (or resume) the study, run one worker, print the Pareto front, write the report."""
    config = _config(study_file, trials, storage, no_wandb)  # first: a bad file is refused in a blink

    from ..logs import Lines, json_event
    from ..report import write_report

    study = _work(config, log_format.value)
    front_table(study, log_format=log_format.value)
    path = report or config.folder / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    written = write_report(study, path)
    if log_format == LogFormat.json:
        Lines(None, "json").write(json_event("report", path=str(written)))
    else:
        out.print(f"report: {written}", soft_wrap=True)
    require_success(study)


def _work(config: cfg.StudyConfig, log_format: str = "auto") -> Any:
    """One worker in this process, its events drawn as `log_format` says (studies.logs)."""
    from ..logs import slots_done, watcher, work_logged
    from ..worker import start

    ctx, study = start(config, join=True)
    with watcher(log_format, out, config.trials, lambda: slots_done(study)) as emit:
        stats = work_logged(ctx, study, emit)
    if stats.exhausted:
        err.print(f"note: {stats.exhausted}", soft_wrap=True)
    return study


@app.command()
def launch(study_file: Path, slurm: Annotated[bool, typer.Option("--slurm", help="Submit to Slurm.")] = False,
           workers: int = 4, partition: str | None = None, time_min: int = 240, gpus: int = 1, cpus: int = 8,
           mem_gb: int = 32, folder: str = ".attnas/slurm", trials: Trials = None, storage: Storage = None,
           no_wandb: NoWandb = False,
           dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the sbatch script only.")] = False,
           log_format: Logs = LogFormat.auto) -> None:
    """Start an array of workers on a cluster (Slurm via submitit); each task's `.out` file logs its trials."""
    from .. import launch as lc

    if not slurm:
        raise StudyError("only Slurm is supported; add --slurm")
    config = _config(study_file, trials, storage, no_wandb)
    options = lc.SlurmOptions(workers, partition, time_min, gpus, cpus, mem_gb, folder,
                              log_format="json" if log_format == LogFormat.json else "plain")
    warning = lc.storage_warning(config)
    if warning:
        err.print(warning)
    if dry_run:
        print(lc.sbatch_script(config, options))
        return
    out.print(f"submitted {len(ids := lc.launch(config, options))} worker(s): {', '.join(ids)}")


