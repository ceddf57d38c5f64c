"""`attnas fidelity`: retrain a study's front (and a spread of other trials) at a higher fidelity, with seeds.

The work is an ordinary linked study (studies.fidelity), so the one worker this command runs can be joined
by `attnas worker` / `attnas launch --slurm` on the linked study file it writes; a rerun resumes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import storage as st
from .app import LogFormat, Logs, NoWandb, Storage, _config, app, out

Extra = Annotated[int | None, typer.Option("--extra", help="Other trained trials besides the front (default 8).")]
Seeds = Annotated[int | None, typer.Option("--seeds", help="Seeds per architecture (default 3).")]
Factor = Annotated[float | None, typer.Option("--epochs-factor", help="Epochs × this (default 4).")]
Images = Annotated[int | None, typer.Option("--images-per-class", help="Training images per class.")]
Resolution = Annotated[int | None, typer.Option("--resolution", help="Training resolution (px).")]
NoRun = Annotated[bool, typer.Option("--no-run", help="Only queue the trials (run workers on the linked file).")]
Json = Annotated[bool, typer.Option("--json", help="Print the numbers as JSON (what the report reads).")]


@app.command()
def fidelity(study_file: Path, extra: Extra = None, seeds: Seeds = None, epochs_factor: Factor = None,
             images_per_class: Images = None, resolution: Resolution = None, no_run: NoRun = False,
             as_json: Json = False, storage: Storage = None, no_wandb: NoWandb = False,
             log_format: Logs = LogFormat.auto) -> None:
    """How far to trust the proxy: retrain the front + others longer with seeds; print and store τ, ρ, σ."""
    parent_config = _config(study_file, storage=storage, no_wandb=no_wandb)

    from .. import fidelity as fd  # lazy: it pulls in scipy.stats (~1 s), see the import rule in studies/__init__

    s = fd.settings(parent_config, extra=extra, seeds=seeds, epochs_factor=epochs_factor,
                    images_per_class=images_per_class, resolution=resolution)
    prepared = fd.prepare(parent_config, s)
    say = (lambda *a: None) if as_json else (lambda text: out.print(text, markup=False))
    say(f"linked study {prepared.config.name!r}: {prepared.architectures} architectures × {s.seeds} seed(s) at "
        f"{prepared.config.schedule.epochs} epochs, {prepared.config.data.resolution} px; {prepared.queued} "
        f"trial(s) queued now, {prepared.done} done before")
    say(f"more workers: attnas worker {prepared.file}   (or attnas launch --slurm {prepared.file})")
    if not no_run:
        run_worker(prepared.config, quiet=as_json, log_format=log_format.value)
    info = st.resolve(parent_config)
    linked = st.load(st.open_existing(info), prepared.config.name)
    numbers = fd.measure(prepared.parent, linked, fd.holdout_images(prepared.config), s)
    fd.store(prepared.parent, numbers)
    if as_json:
        print(json.dumps(numbers, indent=2, allow_nan=False))
    else:
        for line in summary_lines(numbers):
            out.print(line, markup=False)


def run_worker(config: Any, quiet: bool, log_format: str = "auto") -> None:
    """One worker on the linked study, in this process (as `attnas search` runs one), its events drawn as
    `log_format` says (studies.logs); none with `quiet` (stdout is the --json answer then)."""
    from ..logs import slots_done, watcher, work_logged
    from ..worker import start, work

    ctx, study = start(config, join=True)
    if quiet:
        work(ctx, study)
        return
    with watcher(log_format, out, config.trials, lambda: slots_done(study)) as emit:
        work_logged(ctx, study, emit)


def interval(stat: dict[str, float | None]) -> str:
    def f(v: float | None) -> str:
        return "n/a" if v is None else f"{v:+.2f}"

    return f"{f(stat['value'])} (95% CI {f(stat['low'])} .. {f(stat['high'])})"


def points(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} points"


def summary_lines(n: dict[str, Any]) -> list[str]:
    """What `attnas fidelity` prints: the same numbers as --json, as sentences."""
    from ..fidelity import ranking_text  # lazy, as in fidelity() above

    ranking = ranking_text(n)
    archs = n["architectures"]
    lines = [f"proxy vs high fidelity over {len(archs)} architecture(s) (linked study {n['linked_study']}):",
             f"  Kendall tau  {interval(n['kendall_tau'])}",
             f"  Spearman rho {interval(n['spearman_rho'])}",
             f"  seed sigma (pooled) {points(n['seed_sigma'])}; spread between architectures / seed sigma "
             f"{'n/a' if n['spread_to_noise'] is None else format(n['spread_to_noise'], '.2f')}",
             *([f"  {ranking}"] if ranking else []),
             f"  proxy front members still on the high-fidelity front: {n['front_kept']} of {n['front_size']}"]
    ties = n["indistinguishable"]
    lines.append("  front members indistinguishable within noise: "
                 + ("; ".join(f"{a} ~ {b}" for a, b in ties) if ties else "none"))
    for a in archs:
        runs = ", ".join(f"{v:.3f}" for v in a["runs"])
        lines.append(f"  {a['name']}: proxy {a['proxy_top1']:.3f} -> {a['mean_top1']:.3f} (seeds {runs}; "
                     f"sigma {points(a['seed_sigma'])}){' [front]' if a['on_proxy_front'] else ''}")
    return lines
