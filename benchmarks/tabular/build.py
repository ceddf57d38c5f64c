"""Build the learning-curve table of a declared subspace: every architecture, every seed, top-1 after each epoch.

    nice -n 15 .venv/bin/python benchmarks/tabular/build.py [--workers 2] [--out benchmarks/tabular]

Subspace: ResNet-18, c2 none, c3/c4/c5 each in {none, SE r16, GC r16, NL C/2} (4^3 = 64 architectures),
proxy-trained at 1/4 width and 32 px on Fashion-MNIST (a train subset; scored on a held-out part of train).
Each (architecture, seed) run checkpoints every epoch (proxy_train's checkpoint_dir) and, when done, appends
one row per epoch to `table.csv` under a file lock; a rerun skips finished runs and resumes unfinished ones
from their last epoch, so killing the build costs at most one epoch per worker. `table.json` (the sidecar)
names the machine, date, versions, subset, schedule and the accumulated build time.

`--probe` trains one architecture for one seed and prints its seconds per epoch (used to size the table).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import itertools
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from filelock import FileLock

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CHOICES = {
    "none": {"kind": "none"},
    "se": {"kind": "se", "ratio": 16, "fusion": "scale"},
    "gc": {"kind": "gc", "ratio": 16, "fusion": "add", "pooling": "att"},
    "nl": {"kind": "nl", "width": 0.5, "count": 1, "fusion": "add", "subsample": False},
}
SUBSET = {"root": "fashion-mnist", "classes": "all", "train_per_class": 150, "holdout_per_class": 250,
          "resolution": 32, "seed": 0}
SCHEDULE = {"epochs": 9, "batch_size": 64, "lr": 0.1, "width_mult": 0.25, "augment": "pad_crop", "flip": True,
            "amp": False, "channels_last": True}
SEEDS = (0, 1)
COLUMNS = ("spec_name", "spec_id", "c3", "c4", "c5", "seed", "epoch", "epochs", "top1", "top5", "train_loss",
           "epoch_seconds", "seconds", "status", "gflops", "params")


def specs() -> list[Any]:
    """The 64 architectures, in a fixed order (c3 slowest)."""
    from search_space import ArchSpec

    return [ArchSpec.from_dict({"backbone": "resnet18", "width": 1.0,
                                "stages": {"c2": {"kind": "none"}, "c3": CHOICES[a], "c4": CHOICES[b],
                                           "c5": CHOICES[c]}})
            for a, b, c in itertools.product(CHOICES, repeat=3)]


def done_runs(table: Path, epochs: int) -> set[tuple[str, int]]:
    """(spec_id, seed) pairs whose every epoch is in the table; a torn last line (a kill mid-append) is cut."""
    if not table.is_file():
        return set()
    data = table.read_bytes()
    if data and not data.endswith(b"\n"):
        table.write_bytes(data[: data.rfind(b"\n") + 1])
    seen: dict[tuple[str, int], set[int]] = {}
    with table.open(newline="") as f:
        for row in csv.DictReader(f):
            seen.setdefault((row["spec_id"], int(row["seed"])), set()).add(int(row["epoch"]))
    return {key for key, got in seen.items() if got >= set(range(1, epochs + 1))}


def run_one(spec_json: str, seed: int, subset_dict: dict[str, Any], schedule_dict: dict[str, Any],
            ckpt: str) -> list[dict[str, Any]]:
    """Train one (architecture, seed) in this worker process (one torch thread) and return its rows."""
    import torch

    from objectives import measure
    from search_space import ArchSpec
    from trainer import Schedule, SubsetSpec, proxy_train

    torch.set_num_threads(1)
    spec = ArchSpec.from_json(spec_json)
    subset = SubsetSpec.from_dict(subset_dict)
    schedule = Schedule.from_dict({**schedule_dict, "seed": seed})
    result = proxy_train(spec, subset, schedule, "cpu", checkpoint_dir=ckpt)
    cost = measure(spec, 224)
    stages = spec.to_dict()["stages"]
    return [{"spec_name": spec.name, "spec_id": spec.id, "c3": stages["c3"]["kind"], "c4": stages["c4"]["kind"],
             "c5": stages["c5"]["kind"], "seed": seed, "epoch": h.epoch, "epochs": schedule.epochs,
             "top1": round(h.top1, 5), "top5": round(h.top5, 5), "train_loss": round(h.train_loss, 5),
             "epoch_seconds": round(h.seconds, 2), "seconds": round(result.seconds, 1), "status": result.status,
             "gflops": round(cost.gflops, 5), "params": cost.params}
            for h in result.history]


def append(table: Path, rows: list[dict[str, Any]]) -> None:
    with FileLock(str(table) + ".lock"):
        new = not table.is_file() or table.stat().st_size == 0
        with table.open("a", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            if new:
                writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())


def sidecar(out: Path, subset: dict[str, Any], build_s: float, runs: int) -> dict[str, Any]:
    import torch

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    return {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPU cores, {platform.processor()}",
            "cpu_model": _cpu_model(), "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(), "torch": torch.__version__, "attnas_commit": commit.strip(),
            "subspace": "resnet18, c2 none, c3/c4/c5 in {none, se16s, gc16a, nl2a1}", "choices": CHOICES,
            "subset": subset, "schedule": SCHEDULE, "seeds": list(SEEDS), "gflops": "complete count at 224 px",
            "params": "deployed network (full width, 1000 classes)", "runs_done": runs,
            "build_seconds": round(build_s, 1), "note": "built under nice -n 15 on a CPU shared with other users"}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--probe", action="store_true", help="time one run of one architecture and exit")
    args = parser.parse_args()
    from trainer import dataset_root

    subset = {**SUBSET, "root": dataset_root(SUBSET["root"])}
    ckpt = str(args.out / "ckpt")
    all_specs = specs()
    if args.probe:
        t = time.perf_counter()
        rows = run_one(all_specs[-1].to_json(), 0, subset, {**SCHEDULE, "epochs": 2}, ckpt + "-probe")
        for r in rows:
            print(r["spec_name"], "epoch", r["epoch"], "top1", r["top1"], "s/epoch", r["epoch_seconds"])
        print(f"probe wall {time.perf_counter() - t:.1f}s")
        return 0
    table, meta = args.out / "table.csv", args.out / "table.json"
    previous = json.loads(meta.read_text()).get("build_seconds", 0.0) if meta.is_file() else 0.0
    finished = done_runs(table, SCHEDULE["epochs"])
    todo = [(s, seed) for seed in SEEDS for s in all_specs if (s.id, seed) not in finished]
    print(f"{len(finished)} runs done, {len(todo)} to go, {args.workers} workers", flush=True)
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_one, s.to_json(), seed, subset, SCHEDULE, ckpt): (s.name, seed) for s, seed in todo}
        for n, future in enumerate(as_completed(futures), 1):
            rows = future.result()
            append(table, rows)
            elapsed = time.perf_counter() - started
            print(f"[{n}/{len(todo)} {elapsed:.0f}s] {futures[future][0]} seed {futures[future][1]}: "
                  f"top1 {rows[-1]['top1']:.4f} in {rows[-1]['seconds']:.0f}s", flush=True)
            meta.write_text(json.dumps(sidecar(args.out, SUBSET, previous + elapsed,
                                               len(done_runs(table, SCHEDULE["epochs"]))), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
