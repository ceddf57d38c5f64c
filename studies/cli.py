"""The `attnas` command: thin wiring from files and flags to studies/trainer functions.

Every user-fixable failure (bad study file, missing dataset, unreachable database, bad spec) ends as one
line `error: ...` on stderr and exit status 1, with any storage password masked.
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from . import config as cfg
from . import storage as st
from .config import StudyError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Search where SE/NL/GC attention goes in a ResNet (Optuna studies).")
out = Console()
err = Console(stderr=True)

Trials = Annotated[int | None, typer.Option("--trials", help="Total trials of the study (overrides the file).")]
Storage = Annotated[str | None, typer.Option("--storage", help="Storage URL (overrides the file).")]
NoWandb = Annotated[bool, typer.Option("--no-wandb", help="Do not log to Weights & Biases.")]
StudyFile = Annotated[Path | None, typer.Argument(help="The study file (.toml/.yaml).")]
StudyName = Annotated[str | None, typer.Option("--study", help="Study name (with --storage, no file).")]


def _config(path: Path, trials: int | None = None, storage: str | None = None,
            no_wandb: bool = False) -> cfg.StudyConfig:
    return cfg.read_file(path).with_overrides(trials=trials, storage=storage, no_wandb=no_wandb)


def _existing(path: Path | None, storage: str | None, name: str | None) -> tuple[Any, cfg.StudyConfig | None]:
    """The study a read-side command looks at: from the file, or from --storage and --study."""
    if path is not None:
        config = _config(path, storage=storage)
        info = st.resolve(config)
        name = name or config.name
    elif storage and name:
        config, info = None, st.parse(storage)
    else:
        raise StudyError("give the study file, or both --storage URL and --study NAME")
    study = st.load(st.open_storage(info), name)
    return study, config or st.stored_config(study)


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
    from .results import counts
    from .run import start

    config = _config(study_file, trials, storage, no_wandb)
    _, study = start(config)
    out.print(f"study {config.name!r} in {st.mask(st.resolve(config).url)}: {counts(study)}")


@app.command()
def worker(study_file: Path, trials: Trials = None, storage: Storage = None, no_wandb: NoWandb = False) -> None:
    """Run trials until the study's total is reached (start as many workers as you like)."""
    _work(_config(study_file, trials, storage, no_wandb))


@app.command()
def search(study_file: Path, trials: Trials = None, storage: Storage = None, no_wandb: NoWandb = False,
           report: Annotated[Path, typer.Option(help="Where to write the HTML report.")] =
           Path("attnas-report.html")) -> None:
    """Create (or resume) the study, run one worker, print the Pareto front, write the report."""
    from .report import write_report

    study = _work(_config(study_file, trials, storage, no_wandb))
    _front_table(study)
    out.print(f"report: {write_report(study, report)}")


def _work(config: cfg.StudyConfig) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .run import Hooks, start, work

    ctx, study = start(config)
    epochs = config.schedule["epochs"]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=out, transient=False) as progress:
        task = progress.add_task("trials", total=config.trials, completed=_done(study))
        hooks = Hooks(
            on_start=lambda n, name: progress.update(task, description=f"trial {n} {name}"),
            on_epoch=lambda n, s: progress.update(task, description=f"trial {n} epoch {s.epoch}/{epochs}"),
            on_end=lambda t: (progress.console.print(_ended(t)), progress.update(task, completed=_done(study))),
        )
        stats = work(ctx, study, hooks)
    out.print(f"this worker ran {stats.ran} trial(s), {stats.failed} failed")
    return study


def _done(study: Any) -> int:
    from .results import counts

    return counts(study).get("COMPLETE", 0)


def _ended(trial: Any) -> str:
    """One line per finished trial; an over-budget spec says so instead of showing its untrained 0% top-1."""
    scores = trial.user_attrs.get("scores") or {}
    head = f"trial {trial.number} {trial.state.name.lower()}"
    if scores.get("status") == "over_budget":
        return f"{head}: over the FLOP budget ({scores.get('gflops', 0):.2f} GFLOPs), not trained"
    if trial.user_attrs.get("reused_from") is not None:
        return f"{head}: same spec as trial {trial.user_attrs['reused_from']}, reused"
    return f"{head} top-1 {scores.get('top1') or 0:.3f}"


@app.command()
def status(study_file: StudyFile = None, storage: Storage = None, study: StudyName = None) -> None:
    """Trials per state and the study's total."""
    from .results import counts

    s, config = _existing(study_file, storage, study)
    table = Table(title=f"study {s.study_name}")
    for column in ("state", "trials"):
        table.add_column(column)
    for state, n in sorted(counts(s).items()):
        table.add_row(state, str(n))
    out.print(table)
    if config:
        out.print(f"total: {config.trials}; objectives: {', '.join(config.objective_names)}; "
                  f"budget: {config.max_gflops or 'none'} GFLOPs")


@app.command()
def front(study_file: StudyFile = None, storage: Storage = None, study: StudyName = None,
          as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows instead.")] = False) -> None:
    """The Pareto front (feasible, trained trials): name, top-1, GFLOPs, params, trial."""
    from .results import front_rows

    s, _ = _existing(study_file, storage, study)
    if as_json:
        print(json.dumps([r.to_dict() for r in front_rows(s)], indent=2))
    else:
        _front_table(s)


def _front_table(study: Any) -> None:
    from .results import front_rows

    table = Table(title=f"Pareto front of {study.study_name}")
    for column in ("name", "top-1", "GFLOPs", "params (M)", "trial"):
        table.add_column(column, justify="left" if column == "name" else "right")
    for r in front_rows(study):
        table.add_row(r.name, f"{100 * (r.top1 or 0):.1f}%", f"{r.gflops:.3f}",
                      f"{r.params_m:.2f}" if r.params_m is not None else "-", str(r.trial))
    out.print(table)


@app.command()
def pick(study_file: StudyFile = None, storage: Storage = None, study: StudyName = None,
         max_gflops: Annotated[float, typer.Option("--max-gflops", help="FLOP budget (GFLOPs).")] = ...,
         min_top1: Annotated[float | None, typer.Option("--min-top1", help="Minimum proxy top-1 (0..1).")] = None,
         out_file: Annotated[Path | None, typer.Option("--out", help="Spec JSON path.")] = None) -> None:
    """The best architecture under a budget, written as spec JSON (the interchange format)."""
    from search_space import ArchSpec

    from .results import pick as best

    s, _ = _existing(study_file, storage, study)
    row = best(s, max_gflops, min_top1)
    spec = ArchSpec.from_dict(row.spec or {})
    path = out_file or Path(f"{spec.name}.json")
    path.write_text(spec.to_json(indent=2) + "\n")
    out.print(f"{spec.name}: top-1 {100 * (row.top1 or 0):.1f}%, {row.gflops:.3f} GFLOPs (trial {row.trial})")
    out.print(f"wrote {path}; build it with:\n  from search_space import ArchSpec, build_model\n"
              f"  model = build_model(ArchSpec.from_json(open({str(path)!r}).read()), num_classes=1000)\n"
              f"or retrain it and report its val/ accuracy: attnas train {path} --data DIR --val")


@app.command()
def report(study_file: StudyFile = None, storage: Storage = None, study: StudyName = None,
           out_file: Annotated[Path, typer.Option("--out")] = Path("attnas-report.html")) -> None:
    """Write the self-contained HTML report."""
    from .report import write_report

    s, _ = _existing(study_file, storage, study)
    out.print(f"report: {write_report(s, out_file)}")


@app.command()
def dashboard(study_file: StudyFile = None, storage: Storage = None, study: StudyName = None,
              host: Annotated[str, typer.Option(help="Bind address (only this machine by default).")] =
              "127.0.0.1", port: int = 8080) -> None:
    """Serve optuna-dashboard on the study's storage (blocking)."""
    from .dashboard import serve

    if study_file is None and storage is None:
        raise StudyError("give the study file or --storage URL")
    config = _config(study_file) if study_file is not None else None
    info = st.parse(storage) if storage else st.resolve(config)  # type: ignore[arg-type]
    out.print(f"dashboard for {st.mask(info.url)} on http://{host}:{port}")
    serve(info, host=host, port=port, artifacts=st.artifact_dir(config, info))


@app.command()
def launch(study_file: Path, slurm: Annotated[bool, typer.Option("--slurm", help="Submit to Slurm.")] = False,
           workers: int = 4, partition: str | None = None, time_min: int = 240, gpus: int = 1, cpus: int = 8,
           mem_gb: int = 32, folder: str = ".attnas/slurm", trials: Trials = None, storage: Storage = None,
           no_wandb: NoWandb = False,
           dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the sbatch script only.")] = False,
           ) -> None:
    """Start an array of workers on a cluster (Slurm via submitit)."""
    from . import launch as lc

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


@app.command()
def digits(directory: Path) -> None:
    """Write the built-in digits dataset as an ImageFolder tree (train/, val/)."""
    from trainer import write_digits_tree

    out.print(f"wrote {write_digits_tree(directory)}")


@app.command()
def train(spec_file: Path, data: Annotated[Path, typer.Option("--data")],
          classes: str = "all", train_per_class: int | None = None, holdout_per_class: int = 50,
          resolution: int = 64, epochs: int = 5, batch_size: int = 128, width_mult: float = 1.0, seed: int = 0,
          device: str = "cpu",
          as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
          val: Annotated[bool, typer.Option("--val", help="Also score the trained model on val/ (final numbers "
                                                         "only: never pick architectures by them).")] = False,
          runs: Annotated[Path, typer.Option("--runs", help="Checkpoint folder: a rerun resumes there.")] =
          Path(".attnas/runs"),
          ) -> None:
    """Proxy-train one architecture (spec JSON) on an ImageFolder tree."""
    from search_space import ArchSpec
    from trainer import Schedule, SubsetSpec, proxy_train, score_on_val

    if not spec_file.is_file():
        raise StudyError(f"spec file {spec_file} does not exist; write one with `attnas pick`")
    if not data.is_dir():
        raise StudyError(f"--data {data} does not exist; give an ImageFolder tree (see `attnas digits DIR`)")
    spec = ArchSpec.from_json(spec_file.read_text())
    picked: str | tuple[str, ...] = tuple(classes.split(",")) if "," in classes else classes
    subset = SubsetSpec(str(data), picked, train_per_class, holdout_per_class, resolution, seed)
    schedule = Schedule(epochs=epochs, batch_size=batch_size, width_mult=width_mult, seed=seed)
    result = proxy_train(spec, subset, schedule, device, checkpoint_dir=runs, progress=not as_json)
    summary = {k: getattr(result, k) for k in ("top1", "top5", "epochs", "seconds", "images_per_s", "status")}
    if val and result.status == "ok":
        final = score_on_val(spec, subset, schedule, str(result.checkpoint), device, progress=not as_json)
        summary.update(val_top1=final.top1, val_top5=final.top5, val_images=final.images, checkpoint=result.checkpoint)
    if as_json:
        print(json.dumps(summary))
        return
    out.print(f"{spec.name}: held-out top-1 {100 * result.top1:.1f}%, top-5 {100 * result.top5:.1f}%, "
              f"{result.seconds:.1f} s ({result.status}); checkpoint {result.checkpoint}")
    if "val_top1" in summary:
        out.print(f"val/: top-1 {100 * summary['val_top1']:.1f}%, top-5 {100 * summary['val_top5']:.1f}% "
                  f"on {summary['val_images']} images")


@app.command()
def flops(spec: Annotated[str, typer.Argument(help="A spec JSON file, or a spec name like r50-c2:none-c3:gc16a-...")],
          resolution: int = 224,
          as_json: Annotated[bool, typer.Option("--json", help="Print the count as one JSON object.")] = False,
          ) -> None:
    """FLOPs (fvcore's default and complete) and parameters of one architecture at a deployment resolution."""
    from objectives import count_flops, count_params
    from search_space import ArchSpec

    path = Path(spec)
    if path.suffix == ".json" and not path.is_file():
        raise StudyError(f"spec file {spec} does not exist; give a spec JSON file (`attnas pick` writes one) "
                         "or a spec name such as r50-c2:none-c3:gc16a-c4:se16s-c5:nl2a1")
    arch = ArchSpec.from_json(path.read_text()) if path.is_file() else ArchSpec.from_name(spec)
    count, params = count_flops(arch, resolution), count_params(arch)
    if as_json:
        print(json.dumps({"name": arch.name, "id": arch.id, "params": params, **count.to_dict()}))
        return
    out.print(f"{arch.name} at {resolution} px: {params:,} parameters")
    table = Table()
    for column in ("section", "GFLOPs (complete)"):
        table.add_column(column, justify="right" if column != "section" else "left")
    for section, n in count.per_stage.items():
        table.add_row(section, f"{n / 1e9:.4f}")
    table.add_row("total", f"{count.gflops:.4f}")
    out.print(table)
    out.print(f"fvcore default {count.fvcore / 1e9:.4f} G (without BatchNorm {count.fvcore_no_bn / 1e9:.4f} G); "
              f"complete adds softmax, sigmoid, elementwise mul/add, mean and max-pool: {count.gflops:.4f} G")
    if count.uncounted:
        out.print(f"operators counted in neither: {', '.join(count.uncounted)}")


def main() -> None:
    """Entry point: run the app; user errors become one masked `error:` line and exit status 1."""
    import click
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    try:
        code = typer.main.get_command(app).main(standalone_mode=False)
    except click.exceptions.Abort:
        code = 130
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (StudyError, ValueError, SQLAlchemyError, OSError) as exc:
        message = st.unreachable("database", exc) if isinstance(exc, SQLAlchemyError) else exc
        line = " ".join(str(message).split())
        print(f"error: {st.mask(line)}", file=sys.stderr)
        sys.exit(1)
    if code == 130:  # typer turns Ctrl-C into exit code 130 (click's Abort where typer does not)
        print("interrupted: a trial that was running is queued again; run the same command to resume", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
