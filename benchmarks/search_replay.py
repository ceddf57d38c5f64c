"""Replay whole searches on the learning-curve table: samplers x early stopping x seeds, cost in epochs.

Each search is a real attnas study (journal file on /dev/shm, or a temp dir) run by the real worker loop
(`studies.worker.work`: queue, dedup, constraints, MO-ASHA rung records in the storage, the tell); only two
things are answered from benchmarks/tabular/table.csv instead of computed: the training (a seed drawn per
trial picks which table seed's learning curve answers, and `on_epoch` is called after every epoch so MO-ASHA
acts on the real curve and can stop it) and the cost (the table's GFLOPs/params, measured by the same code,
so 64 fvcore counts are not repeated 200 times).

The space is the table's: resnet18, c2 none, c3/c4/c5 in {none, SE r16, GC r16 att-pool, NL w0.5}. attnas'
SearchSpace has one `fusions` list for every kind while the table's SE uses scale fusion and GC/NL add, so
the replayed space offers fusion "add" only and a proposed SE stage is answered by the table's se16s row
(the sampler sees 4 choices per stage, 64 architectures, exactly the table's).

For every run: after each finished trial, the front the user would be shown (`records.pareto_front` of the
trained trials so far, by the proxy values the search saw) is evaluated with the table's final-epoch values
(mean over its seeds) and its hypervolume (`records.hypervolume`, moocore) is taken against a fixed
reference (top-1 0, 1.1 x the largest GFLOPs in the table), together with the epochs trained so far.

Variants: "none" (no early stopping), "moasha-pruned" and "moasha-complete" (MO-ASHA, eta 3, min_epochs 1:
rungs at 1 and 3 of 9 epochs, the stopped trial told as PRUNED or as COMPLETE with its rung values; both
with front_eligible = +1). MO-ASHA runs get more trials (`--stop-trials`) so that their curves extend
to the epochs the no-stopping runs spend.

    nice -n 10 .venv/bin/python benchmarks/search_replay.py            # full: 3 samplers x 3 variants x 20 seeds
    .venv/bin/python benchmarks/search_replay.py --seeds 2 --trials 8  # smoke
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import multiprocessing
import random
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
TABLE = HERE / "tabular" / "table.csv"
SAMPLERS = ("random", "tpe", "nsga2")
VARIANTS = ("none", "moasha-pruned", "moasha-complete")
KINDS = ("none", "se", "gc", "nl")


@dataclasses.dataclass(frozen=True)
class Table:
    """The learning curves by (c3, c4, c5) kind: {seed: (top1 per epoch)}, the cost, the final mean top-1."""

    curves: dict[tuple[str, str, str], dict[int, tuple[float, ...]]]
    gflops: dict[tuple[str, str, str], float]
    params: dict[tuple[str, str, str], int]
    epochs: int

    def final(self, key: tuple[str, str, str]) -> float:
        return float(np.mean([c[-1] for c in self.curves[key].values()]))


def read_table(path: Path = TABLE) -> Table:
    rows: dict[tuple[str, str, str], dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    gflops, params, epochs = {}, {}, 0
    with path.open() as f:
        for row in csv.DictReader(f):
            key = tuple(row[s][:2] if row[s] != "none" else "none" for s in ("c3", "c4", "c5"))
            rows[key][int(row["seed"])][int(row["epoch"])] = float(row["top1"])
            gflops[key], params[key], epochs = float(row["gflops"]), int(row["params"]), int(row["epochs"])
    curves = {k: {s: tuple(e[i] for i in sorted(e)) for s, e in seeds.items()} for k, seeds in rows.items()}
    return Table(curves, gflops, params, epochs)


def stage_kinds(spec: Any) -> tuple[str, str, str]:
    stages = spec.to_dict()["stages"]
    return tuple(stages[s]["kind"] for s in ("c3", "c4", "c5"))


def study_dict(name: str, folder: Path, sampler: str, seed: int, variant: str, trials: int, epochs: int) -> dict:
    kinds = {"c2": ["none"], **{s: list(KINDS) for s in ("c3", "c4", "c5")}}
    data: dict[str, Any] = {
        "name": name, "storage": f"journal:///{folder}/{name}.log", "artifacts": str(folder / "artifacts"),
        "trials": trials, "device": "cpu",
        "space": {"backbones": ["resnet18"], "kinds": kinds, "ratios": [16], "fusions": ["add"],
                  "poolings": ["att"], "nl_widths": [0.5], "nl_counts": [1]},
        "schedule": {"epochs": epochs},
        "sampler": {"name": sampler, "seed": seed},
        "wandb": {"mode": "disabled"},
    }
    if variant != "none":
        data["early_stopping"] = {"kind": "moasha", "eta": 3, "min_epochs": 1}
    return data


def run_one(job: tuple[str, str, int, int, str]) -> dict[str, Any]:
    """One search; returns per finished trial (in order): epochs trained, and the shown front's true HV."""
    warnings.simplefilter("ignore")
    import optuna

    import trainer
    from objectives import Cost
    from studies import records as rec
    from studies import worker
    from studies.config import from_dict

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    sampler, variant, seed, trials, folder = job
    table = read_table()
    draw = random.Random(f"{sampler}-{variant}-{seed}")
    trained_epochs = [0]

    def measure(spec: Any, resolution: int) -> Cost:
        key = stage_kinds(spec)
        return Cost(table.gflops[key], table.gflops[key], table.params[key])

    def train(spec: Any, subset: Any, schedule: Any, device: Any, *, on_epoch=None, **_: Any) -> Any:
        curve = table.curves[stage_kinds(spec)]
        seeds = sorted(curve)
        top1s = curve[seeds[draw.randrange(len(seeds))]]  # the seed drawn for this trial
        history, status = [], "ok"
        for epoch, top1 in enumerate(top1s[: schedule.epochs], start=1):
            stats = trainer.EpochStats(epoch, 1.0, top1, top1, 0.0, 1.0)
            history.append(stats)
            trained_epochs[0] += 1
            if on_epoch is not None and on_epoch(stats) is False:
                status = "stopped"
                break
        return trainer.ProxyResult(top1=history[-1].top1, top5=history[-1].top5, epochs=len(history), seconds=0.0,
                                   images_per_s=1.0, status=status, history=tuple(history))

    name = f"{sampler}-{variant}-{seed}"
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        config = from_dict(study_dict(name, Path(tmp), sampler, seed, variant, trials, table.epochs))
        ctx, study = worker.start(config, join=True)
        ctx = dataclasses.replace(ctx, measure=measure, train=train, runs=Path(tmp) / "runs",
                                  stopped_as=variant.removeprefix("moasha-") if variant != "none" else "pruned")
        started = time.perf_counter()
        worker.work(ctx, study)
        seconds = time.perf_counter() - started
        records = sorted(rec.records(study), key=lambda r: r.number)
    reference = (0.0, 1.1 * max(table.gflops.values()))
    epochs, hv, spent, shown = [], [], 0, []
    for r in records:
        if r.status not in (rec.Status.TRAINED, rec.Status.STOPPED, rec.Status.OVER_BUDGET, rec.Status.REUSED):
            continue
        spent += r.epochs if r.status != rec.Status.REUSED else 0
        shown.append(r)
        front = rec.pareto_front(shown)
        truth = [dataclasses.replace(f, top1=table.final(stage_kinds(f.spec))) for f in front]
        epochs.append(spent)
        hv.append(rec.hypervolume(truth, reference))
    assert spent == trained_epochs[0], (spent, trained_epochs[0])  # the records account for every epoch
    stopped = sum(r.status == rec.Status.STOPPED for r in records)
    return {"sampler": sampler, "variant": variant, "seed": seed, "epochs": epochs, "hv": hv,
            "stopped": stopped, "trials": len(epochs), "seconds": seconds}


def step_at(xs: list[int], ys: list[float], grid: np.ndarray) -> np.ndarray:
    """The HV reached by each grid point (a step function of xs; 0 before the first)."""
    idx = np.searchsorted(np.asarray(xs), grid, side="right") - 1
    out = np.where(idx >= 0, np.asarray(ys)[np.clip(idx, 0, None)], 0.0)
    return out


def by_trial(runs: list[dict], n: int) -> np.ndarray:
    """HV after trial 1..n of each run (the last value carried when a run holds fewer), one row per run."""
    return np.array([[r["hv"][min(i, len(r["hv"]) - 1)] for i in range(n)] for r in runs])


def first_reach(curve: np.ndarray, target: float) -> int | None:
    hit = np.flatnonzero(curve >= target - 1e-12)
    return int(hit[0]) if hit.size else None


def summarise(runs: list[dict], trials: int, stop_trials: int, epochs: int) -> dict[str, Any]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in runs:
        groups[(r["sampler"], r["variant"])].append(r)
    top = trials * epochs
    grid = np.arange(0, top + 1)
    out: dict[str, Any] = {"curves_epochs": {}, "curves_trials": {}, "ratios": {}, "stats": {}}
    for (sampler, variant), rs in groups.items():
        med = np.median(np.array([step_at(r["epochs"], r["hv"], grid) for r in rs]), axis=0)
        out["curves_epochs"][f"{sampler}/{variant}"] = med.tolist()
        out["curves_trials"][f"{sampler}/{variant}"] = np.median(by_trial(rs, max(trials, stop_trials)),
                                                                 axis=0).tolist()
        out["stats"][f"{sampler}/{variant}"] = {
            "runs": len(rs), "median_final_hv": float(np.median([r["hv"][-1] for r in rs])),
            "median_epochs": float(np.median([r["epochs"][-1] for r in rs])),
            "median_stopped": float(np.median([r["stopped"] for r in rs])),
            "median_trials": float(np.median([r["trials"] for r in rs])),
        }
    for sampler in SAMPLERS:
        base = groups.get((sampler, "none"))
        if not base:
            continue
        base_epochs = float(np.median([r["epochs"][-1] for r in base]))
        target = float(np.median([r["hv"][-1] for r in base]))
        for variant in VARIANTS[1:]:
            if (sampler, variant) not in groups:
                continue
            curve = np.asarray(out["curves_epochs"][f"{sampler}/{variant}"])
            hit = first_reach(curve, target)
            ahead = [step_at(r["epochs"], r["hv"], np.array([top]))[0] for r in groups[(sampler, variant)]]
            out["ratios"][f"epochs {sampler}/{variant} to reach {sampler}/none final HV"] = {
                "target_hv": target, "none_epochs": base_epochs, "epochs": hit,
                "ratio": None if hit is None else hit / base_epochs,
                "median_hv_at_none_epochs": float(np.median(ahead)),
            }
    rand = groups.get(("random", "none"))
    if rand:
        target = float(np.median([r["hv"][-1] for r in rand]))
        for sampler in SAMPLERS[1:]:
            if (sampler, "none") not in groups:
                continue
            curve = np.median(by_trial(groups[(sampler, "none")], trials), axis=0)
            hit = first_reach(curve, target)
            out["ratios"][f"trials {sampler}/none to reach random/none final HV"] = {
                "target_hv": target, "random_trials": trials, "trials": None if hit is None else hit + 1,
                "ratio": None if hit is None else (hit + 1) / trials,
            }
    return out


def plot(summary: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, axes = plt.subplots(1, len(SAMPLERS), figsize=(15, 4.2), sharey=True)
    for ax, sampler in zip(axes, SAMPLERS, strict=True):
        for variant in VARIANTS:
            curve = summary["curves_epochs"].get(f"{sampler}/{variant}")
            if curve is not None:
                ax.plot(np.arange(len(curve)), curve, label=variant)
        ax.set_title(f"{sampler}: median HV vs epochs trained")
        ax.set_xlabel("epochs trained")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("hypervolume of the shown front (table final top-1)")
    axes[0].legend()
    fig.tight_layout()
    paths.append(out / "search_replay_epochs.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for sampler in SAMPLERS:
        curve = summary["curves_trials"].get(f"{sampler}/none")
        if curve is not None:
            ax.plot(np.arange(1, len(curve) + 1), curve, label=sampler)
    ax.set_title("no early stopping: median HV vs trials")
    ax.set_xlabel("trials")
    ax.set_ylabel("hypervolume")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    paths.append(out / "search_replay_trials.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--trials", type=int, default=24, help="trials per search without early stopping")
    parser.add_argument("--stop-trials", type=int, default=40, help="trials per search with MO-ASHA")
    parser.add_argument("--samplers", default=",".join(SAMPLERS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--json", type=Path, default=None, help="also write the summary and every run here")
    args = parser.parse_args()
    table = read_table()
    shm = Path("/dev/shm")
    folder = str(shm if shm.is_dir() else Path(tempfile.gettempdir()))
    jobs = [(s, v, seed, args.trials if v == "none" else args.stop_trials, folder)
            for seed in range(args.seeds) for s in args.samplers.split(",") for v in args.variants.split(",")]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        runs = list(pool.imap_unordered(run_one, jobs))
    wall = time.perf_counter() - started
    summary = summarise(runs, args.trials, args.stop_trials, table.epochs)
    print(f"{len(runs)} searches in {wall:.0f} s ({args.processes} processes); "
          f"{args.trials} trials without stopping, {args.stop_trials} with MO-ASHA; {args.seeds} seeds")
    print(f"{'sampler/variant':24} {'final HV':>9} {'epochs':>7} {'trials':>7} {'stopped':>8}  (medians)")
    for key, s in sorted(summary["stats"].items()):
        print(f"{key:24} {s['median_final_hv']:9.4f} {s['median_epochs']:7.0f} {s['median_trials']:7.0f} "
              f"{s['median_stopped']:8.0f}")
    print("median HV by epochs trained (every 24 epochs):")
    for key, curve in sorted(summary["curves_epochs"].items()):
        print(f"  {key:24} " + " ".join(f"{v:.3f}" for v in curve[::24]))
    print("ratios:")
    for key, r in summary["ratios"].items():
        print(f"  {key}: " + json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}))
    for path in plot(summary, args.out):
        print(f"wrote {path}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "runs": runs, "wall_s": wall}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
