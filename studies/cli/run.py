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
from .app import NoWandb, Storage, Trials, _config, app, err, out, require_success
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
def worker(study_file: Path, trials: Trials = None, storage: Storage = None, no_wandb: NoWandb = False) -> None:
    """Run trials until the study's total is reached (start as many workers as you like)."""
    _work(_config(study_file, trials, storage, no_wandb))


@app.command()
def search(study_file: Path, trials: Trials = None, storage: Storage = None, no_wandb: NoWandb = False,
           report: Annotated[Path | None, typer.Option(help="Where to write the HTML report "
                                                       "(default: .attnas/<study name>/report.html).")] = None,
           ) -> None:
    """Create (or resume) the study, run one worker, print the Pareto front, write the report."""
    config = _config(study_file, trials, storage, no_wandb)  # first: a bad file is refused in a blink

    from ..report import write_report

    study = _work(config)
    front_table(study)
    path = report or config.folder / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    out.print(f"report: {write_report(study, path)}")
    require_success(study)


def _work(config: cfg.StudyConfig) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..worker import Hooks, start, work

    ctx, study = start(config, join=True)
    epochs = config.schedule.epochs
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=out, transient=False) as progress:
        task = progress.add_task("trials", total=config.trials, completed=_done(study))
        hooks = Hooks(
            on_start=lambda n, name: progress.update(task, description=f"trial {n} {name}"),
            on_epoch=lambda n, s: progress.update(task, description=f"trial {n} epoch {s.epoch}/{epochs}"),
            on_end=lambda n, record: (progress.console.print(_ended(n, record)),
                                      progress.update(task, completed=_done(study))),
        )
        stats = work(ctx, study, hooks)
    reused = f", {stats.reused} proposal(s) already in the study (reused, not trained)" if stats.reused else ""
    out.print(f"this worker ran {stats.ran} trial(s), {stats.failed} failed{reused}")
    if stats.exhausted:
        err.print(f"note: {stats.exhausted}")
    return study


def _done(study: Any) -> int:
    """Slots done: COMPLETE trials that are not reused duplicates (those take no slot)."""
    from optuna.trial import TrialState

    from ..queue import reused

    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if not reused(t))


def _ended(number: int, record: dict[str, Any]) -> str:
    """One line per finished trial; an over-budget spec says so instead of showing its untrained 0% top-1."""
    head = f"trial {number}"
    outcome = record.get("outcome")
    if record.get("error") and outcome is None:
        return f"{head} failed: {record['error']}"
    if outcome == "over_budget":
        return f"{head}: over the FLOP budget ({record.get('gflops', 0):.2f} GFLOPs), not trained"
    if outcome == "reused":
        return f"{head}: same spec as trial {record.get('reused_from')}, reused (takes no slot)"
    if outcome == "diverged":
        return f"{head}: diverged (loss not finite) after {record.get('epochs')} epoch(s)"
    resumed = f", resumed at epoch {record['start_epoch'] + 1}" if record.get("start_epoch") else ""
    return f"{head} complete top-1 {record.get('top1') or 0:.3f}{resumed}"


@app.command()
def launch(study_file: Path, slurm: Annotated[bool, typer.Option("--slurm", help="Submit to Slurm.")] = False,
           workers: int = 4, partition: str | None = None, time_min: int = 240, gpus: int = 1, cpus: int = 8,
           mem_gb: int = 32, folder: str = ".attnas/slurm", trials: Trials = None, storage: Storage = None,
           no_wandb: NoWandb = False,
           dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the sbatch script only.")] = False,
           ) -> None:
    """Start an array of workers on a cluster (Slurm via submitit)."""
    from .. import launch as lc

    if not slurm:
        raise StudyError("only Slurm is supported; add --slurm")
    config = _config(study_file, trials, storage, no_wandb)
    options = lc.SlurmOptions(workers, partition, time_min, gpus, cpus, mem_gb, folder)
    warning = lc.storage_warning(config)
    if warning:
        err.print(warning)
    if dry_run:
        print(lc.sbatch_script(config, options))
        return
    out.print(f"submitted {len(ids := lc.launch(config, options))} worker(s): {', '.join(ids)}")


