"""Run a plan of proxy runs on another machine (a lent GPU), and bring back runs files the benchmarks read.

Usage: python benchmarks/device_runs.py PLAN.jsonl --out DIR [--device cuda] [--procs P] [--deadline S]
           [--data DIR]

Why: the known-answer ground truth and the proxies' repeats are many small independent runs (hours on 2 CPU
cores, minutes on a GPU), and a lent GPU machine has neither this project's pins nor its study tooling
(optuna, pydantic, fvcore). So the benchmarks that know *which* runs are missing write them as a plan
(`known_answer.py --plan`, `proxy_modes.py --plan`: one JSON line per run, made by `plan_line`), and this
script, which imports only `trainer` and `search_space`, trains them there: P processes sharing the device
(tiny networks leave a GPU idle between kernel launches; one process each keeps it busier), one torch thread
each. Each finished run is appended at once to DIR/<its runs file>, in the benchmark's own record format
(its key fields, top1, seconds) plus the device's name, so a lease cut short still returns every run that
ended, and appending those lines to the benchmark's runs file makes it print its table without training.
No new run starts after S seconds (the lease is the limit); runs already in DIR are skipped (a rerun resumes).
`--data DIR` points the built-in Fashion-MNIST datasets at a carried copy of its four IDX files.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from search_space import ArchSpec
from trainer import Schedule, SubsetSpec

#: Built-in roots whose IDX files `--data` replaces.
IDX_ROOTS = ("fashion-mnist", "fashion-odd")


def plan_line(runs: str, key: dict[str, Any], spec: ArchSpec, subset: SubsetSpec, schedule: Schedule) -> str:
    """One run of a plan: the runs file it belongs to (a name), its key there, and what to train. `subset` as
    the study file gives it (`StudyConfig.data.spec()`): a built-in dataset by name, not this machine's tree."""
    return json.dumps({"runs": runs, "key": key, "spec": spec.to_dict(), "subset": subset.to_dict(),
                       "schedule": schedule.to_dict()})


def read_plan(path: Path, data: str | None) -> list[dict[str, Any]]:
    """The plan's runs, each subset's root made a tree here: a built-in dataset's name (what the plan holds, as
    its study file does) is written to this machine's cache, from the `data` folder for Fashion-MNIST's."""
    from trainer import dataset_root

    plan = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    trees: dict[str, str] = {}
    for run in plan:
        root = run["subset"]["root"]
        if root not in trees:
            name = root.partition(":")[0]
            trees[root] = dataset_root(f"{name}:{data}" if data and name in IDX_ROOTS else root)
        run["subset"]["root"] = trees[root]
    return plan


def runs_in(path: Path) -> Iterator[dict[str, Any]]:
    """Each run a JSONL runs file records (a torn last line from a kill is skipped; no file holds none). It
    lives here, the one benchmark module without the study tooling, so this script reads its own output with
    it; the other benchmarks read their runs files with it too."""
    for line in path.read_text().splitlines() if path.is_file() else ():
        try:
            yield json.loads(line)
        except ValueError:
            continue


def repeated(paths: Iterable[Path]) -> Path | None:
    """The first of `paths` naming a file an earlier one named (under any spelling), or None. Pooled twice, a
    runs file's runs would pass for independent seeds and shrink every standard error, so the benchmarks that
    pool runs files refuse it."""
    seen: set[Path] = set()
    for path in paths:
        if (key := path.resolve()) in seen:
            return path
        seen.add(key)
    return None


def done_runs(path: Path, fields: tuple[str, ...] = ("name", "seed")) -> dict[tuple, float]:
    """Key (the record's `fields`) -> top-1 of the runs already in the JSONL file."""
    return {tuple(r[f] for f in fields): r["top1"] for r in runs_in(path)}


def todo_runs(plan: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """The plan's runs that DIR's runs files do not hold yet (each file read once)."""
    done: dict[tuple[str, tuple[str, ...]], dict[tuple, float]] = {}
    todo = []
    for run in plan:
        file_key = (run["runs"], tuple(run["key"]))
        if file_key not in done:
            done[file_key] = done_runs(out / run["runs"], file_key[1])
        if tuple(run["key"].values()) not in done[file_key]:
            todo.append(run)
    return todo


def one_run(run: dict[str, Any], device: str) -> dict[str, Any]:
    import torch

    from trainer import proxy_train

    torch.set_num_threads(1)
    began = time.perf_counter()
    top1 = proxy_train(ArchSpec.from_dict(run["spec"]), SubsetSpec.from_dict(run["subset"]),
                       Schedule.from_dict(run["schedule"]), device).top1
    return {**run["key"], "top1": top1, "seconds": time.perf_counter() - began}


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({torch.backends.cpu.get_cpu_capability()})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plan", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--procs", type=int, default=8)
    parser.add_argument("--deadline", type=float, default=float("inf"), help="seconds after which no run starts")
    parser.add_argument("--data", default=None, help="folder of Fashion-MNIST's four IDX .gz files")
    args = parser.parse_args()
    began = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    todo = todo_runs(read_plan(args.plan, args.data), args.out)
    from trainer import load_cache

    for subset in {json.dumps(r["subset"], sort_keys=True) for r in todo}:
        load_cache(SubsetSpec.from_dict(json.loads(subset)))  # built once here, not by P processes racing its lock
    name = device_name(args.device)
    print(f"{len(todo)} runs to do on {name}, {args.procs} processes; caches ready in "
          f"{time.perf_counter() - began:.0f} s", flush=True)
    pending: dict[Future, dict[str, Any]] = {}
    ended = 0
    with ProcessPoolExecutor(args.procs, mp_context=multiprocessing.get_context("spawn")) as pool:
        queue = iter(todo)
        while True:
            while len(pending) < args.procs and time.perf_counter() - began < args.deadline:
                run = next(queue, None)
                if run is None:
                    break
                pending[pool.submit(one_run, run, args.device)] = run
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                run = pending.pop(future)
                try:
                    record = future.result()
                except Exception as exc:  # one failed run is reported and the rest go on
                    print(f"FAILED {run['key']}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                    continue
                with (args.out / run["runs"]).open("a") as f:
                    f.write(json.dumps({**record, "device": name}) + "\n")
                ended += 1
                print(f"{time.perf_counter() - began:6.0f} s  {run['runs']} {record}", flush=True)
    print(f"{ended} of {len(todo)} runs ended in {time.perf_counter() - began:.0f} s on {name}", flush=True)


if __name__ == "__main__":
    main()
