"""Bookkeeping cost per trial: attnas' worker loop against plain `optuna.Study.optimize`, training stubbed out.

Both run the same study on the same storage kind with the same sampler, the same `suggest` over the same
space and the same constraints; training is replaced by a deterministic stub of the same shape (a
`trainer.ProxyResult` whose top-1 is a function of the spec id) and FLOP counting by a cached deterministic
cost, so what is left is what each side does around a trial: attnas' claim, heartbeat, dedup index, trial attr,
constraints, artifact upload and tell; Optuna's ask, constraints and tell.

The two sides take turns, `--chunk` trials each (50 by default; attnas' slots are topped up between its
turns, outside the timing), so a shared machine's drifting load and fsync latency fall on both alike; with
`--chunk 0` all attnas trials run first, then all Optuna trials (how RESULTS.md's first figures were taken).

Printed per storage: seconds per trial over trials 1-100, 400-500 and 900-1000 (those that exist), SQL
statements per trial (SQLAlchemy `before_cursor_execute` events on the storage's engine; journal files have
none), and the ratio attnas / Optuna. Run: `nice -n 15 .venv/bin/python benchmarks/study_overhead.py`
(`--quick` for a smoke run; `--storages sqlite,journal` to skip PostgreSQL).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy import event

import objectives
import trainer
from search_space import ArchSpec, suggest
from studies import queue, worker
from studies import storage as st
from studies.config import StudyConfig, from_dict
from studies.constraints import set_constraints

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
WINDOWS = ((0, 100), (400, 500), (900, 1000))
SPACE = {"backbones": ["resnet18"], "widths": [0.5, 0.75, 1.0], "kinds": ["none", "se", "gc", "nl"],
         "ratios": [8, 16], "fusions": ["add", "scale"], "nl_widths": [0.5]}


def _unit(spec_id: str, salt: str) -> float:
    return int(hashlib.sha256((salt + spec_id).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def stub_cost(spec: ArchSpec, resolution: int = 224) -> objectives.Cost:
    """A deterministic cost per spec (what `measure` returns, without fvcore)."""
    gflops = 0.5 + 2.0 * _unit(spec.id, "g")
    return objectives.Cost(gflops=gflops, gflops_fvcore=0.98 * gflops, params=int(1e7 * (1 + _unit(spec.id, "p"))))


def stub_train(spec: ArchSpec, subset: Any, schedule: trainer.Schedule, device: Any = "cpu", *,
               on_epoch: Callable[[trainer.EpochStats], None] | None = None, **_: Any) -> trainer.ProxyResult:
    """A proxy run of `schedule.epochs` epochs whose curve is a function of the spec id (no training)."""
    final = 0.5 + 0.4 * _unit(spec.id, "t")
    history = tuple(trainer.EpochStats(e, 1.0 / e, final * e / schedule.epochs, 1.0, 0.0, 1e4)
                    for e in range(1, schedule.epochs + 1))
    for h in history:
        if on_epoch is not None:
            on_epoch(h)
    return trainer.ProxyResult(final, 1.0, schedule.epochs, 0.0, 1e4, "ok", None, history)


def study_config(name: str, storage: str, trials: int, folder: Path, sampler: str) -> StudyConfig:
    return from_dict({"name": name, "storage": storage, "artifacts": str(folder / f"{name}-artifacts"),
                      "trials": trials, "device": "cpu", "space": SPACE, "data": {"resolution": 16},
                      "schedule": {"epochs": 4}, "objectives": {"max_gflops": 2.2},
                      "sampler": {"name": sampler, "seed": 0}})


class Statements:
    """Counts SQL statements on an RDB storage's engine (nothing on a journal file)."""

    def __init__(self, storage: Any) -> None:
        self.count = 0
        engine = getattr(storage, "engine", None)
        if engine is not None:
            event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        self.count += 1


def run_attnas(config: StudyConfig, turns: Iterator[int]) -> Iterator[tuple[list[float], float]]:
    """attnas' worker loop, one turn of `next(turns)` slots per step: each step yields (per-trial seconds,
    SQL statements) of that turn. Slots are queued before a turn (as `create` queues them), outside the timing."""
    ctx, study = worker.start(replace(config, trials=0), join=True)
    sql = Statements(ctx.storage)
    target = 0
    for n in turns:
        target += n
        ctx = replace(ctx, config=replace(config, trials=target), measure=stub_cost, train=stub_train)
        queue.top_up(ctx.info, ctx.storage, study, target)
        ends: list[float] = []
        before = sql.count
        t0 = time.perf_counter()
        worker.work(ctx, study, worker.Hooks(on_end=stamp(ends)), poll_s=0.05)
        yield _durations(t0, ends), sql.count - before


def run_optuna(config: StudyConfig, turns: Iterator[int]) -> Iterator[tuple[list[float], float]]:
    """The same trials through `study.optimize` (ask, suggest, constraints, tell) on the same storage kind."""
    storage = st.open_storage(st.resolve(config))
    study = optuna.create_study(study_name=config.name, storage=storage, directions=config.objectives.directions,
                                sampler=st.make_sampler(config, 0))
    sql = Statements(storage)
    goals = config.objectives

    def objective(trial: optuna.Trial) -> list[float]:
        spec = suggest(trial, config.space)
        cost = stub_cost(spec)
        set_constraints(trial, goals.constraints(cost.gflops))
        top1 = stub_train(spec, None, config.schedule).top1 if goals.feasible(cost.gflops) else None
        return goals.values(top1, cost.gflops, cost.params)

    for n in turns:
        ends: list[float] = []
        before = sql.count
        t0 = time.perf_counter()
        study.optimize(objective, n_trials=n, callbacks=[stamp(ends)])
        yield _durations(t0, ends), sql.count - before


def run_pair(kind: str, n: int, chunk: int, folder: Path, sampler: str) -> dict[str, tuple[list[float], float]]:
    """Both sides on `kind`, taking turns of `chunk` trials (all of one side, then the other, with 0):
    side -> (per-trial seconds, SQL statements per trial)."""
    sizes = [n] if chunk <= 0 else [min(chunk, n - i) for i in range(0, n, chunk)]
    configs = {}
    for side in ("attnas", "optuna"):
        name = f"overhead-{side}-{uuid.uuid4().hex[:6]}"
        configs[side] = study_config(name, url_for(kind, folder, name), n, folder, sampler)
    runs = {"attnas": run_attnas(configs["attnas"], iter(sizes)), "optuna": run_optuna(configs["optuna"], iter(sizes))}
    seconds: dict[str, list[float]] = {"attnas": [], "optuna": []}
    sql = dict.fromkeys(runs, 0.0)
    for side, run in itertools.chain.from_iterable(runs.items() for _ in sizes):  # attnas, optuna, attnas, ...
        took, statements = next(run)
        seconds[side] += took
        sql[side] += statements
    if kind == "postgresql":
        for config in configs.values():
            optuna.delete_study(study_name=config.name, storage=st.open_storage(st.resolve(config)))
    return {side: (seconds[side], sql[side] / max(1, len(seconds[side]))) for side in runs}


def stamp(ends: list[float]) -> Callable[..., None]:
    """A trial-end hook (worker.Hooks.on_end, an optimize callback) that appends the time to `ends`."""
    return lambda *_: ends.append(time.perf_counter())


def _durations(t0: float, ends: list[float]) -> list[float]:
    return [b - a for a, b in zip([t0, *ends[:-1]], ends, strict=True)]


def windows(seconds: list[float]) -> dict[str, float]:
    """Mean seconds per trial in each window that the run reached (trial numbers 1-based in the labels)."""
    return {f"{a + 1}-{b}": statistics.fmean(seconds[a:b]) for a, b in WINDOWS if len(seconds) >= b}


def url_for(kind: str, folder: Path, name: str) -> str:
    return {"sqlite": f"sqlite:///{folder}/{name}.db", "journal": f"journal://{folder}/{name}.log",
            "postgresql": PG_URL}[kind]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storages", default="sqlite,postgresql,journal")
    parser.add_argument("--sqlite-trials", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=300, help="trials on PostgreSQL and journal")
    parser.add_argument("--sampler", default="random", help="random | tpe | nsga2 (the same on both sides)")
    parser.add_argument("--quick", action="store_true", help="30 trials each (a smoke run)")
    parser.add_argument("--chunk", type=int, default=50, help="trials per turn (0: one side after the other)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = Path(tempfile.mkdtemp(prefix="attnas-overhead-"))
    os.chdir(folder)  # the worker writes .attnas/<study>/runs/ under the working folder
    print(f"sampler {args.sampler}; training and FLOP counting stubbed; turns of {args.chunk or 'all'} trials; "
          f"folder {folder}")
    for kind in args.storages.split(","):
        n = 30 if args.quick else (args.sqlite_trials if kind == "sqlite" else args.trials)
        results = run_pair(kind, n, args.chunk, folder, args.sampler)
        (a, a_sql), (o, o_sql) = results["attnas"], results["optuna"]
        wa, wo = windows(a), windows(o)
        if not wa:
            wa, wo = {f"1-{len(a)}": statistics.fmean(a)}, {f"1-{len(o)}": statistics.fmean(o)}
        print(f"\n{kind}: {len(a)} attnas trials, {len(o)} optuna trials")
        for label in wa:
            print(f"  trials {label:>9}: attnas {wa[label]:.4f} s, optuna {wo[label]:.4f} s, "
                  f"ratio {wa[label] / wo[label]:.2f}x")
        whole = statistics.fmean(a) / statistics.fmean(o)
        sql_text = f"; SQL per trial: attnas {a_sql:.1f}, optuna {o_sql:.1f}" if a_sql or o_sql else ""
        print(f"  all trials: attnas {statistics.fmean(a):.4f} s, optuna {statistics.fmean(o):.4f} s, "
              f"ratio {whole:.2f}x{sql_text}")


if __name__ == "__main__":
    main()
