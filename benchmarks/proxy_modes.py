"""Proxy modes side by side: how repeatable is each one's ranking, how close to the ground truth, at what cost?

Usage: .venv/bin/python benchmarks/proxy_modes.py [STUDY.toml] [--truth GT.json] [--placements N]
           [--epochs P] [--scratch-seeds S] [--trunk-epochs T] [--ft-epochs E] [--runs FILE.jsonl] [--jobs J] [--json]

STUDY (default studies/examples/fashion-odd.toml, the known-answer task) gives the data, the schedule (its
`epochs`, or P, = the scratch proxy's) and the architectures: every one of its space, or with `--placements N` the
plain network and N - 1 others of the learning-curve table's 64 (c2 none; c3/c4/c5 each none, SE, GC or
NL) in a fixed random order - the way to run it on studies/examples/fashion.toml.
It trains, J single-thread processes at a time:
  - scratch: every architecture from its own init with seeds 10, 11, ... (S of them; 0-2 are the ground
    truth's, so the two never share a run);
  - trunk: two trunks (the plain network, T epochs, trunk seeds 0 and 1), and every architecture fine-tuned
    E epochs from each: from trunk 0 with fine-tune seeds 0 and 2, from trunk 1 with 1 (and 3 with
    --trunk-auto).
Every run is appended to FILE.jsonl as it ends (default /tmp/proxy-modes-<study>.jsonl), keyed by mode, trunk,
seed, architecture and its own epochs, and runs already there are not trained again (nor a trunk whose
fine-tunes are all there), so a killed benchmark resumes, one file holds the scratch proxy at several --epochs,
and the runs behind RESULTS.md (benchmarks/runs/) print their table again in a minute, without training.
Then it prints, per mode:
  (rows need their runs: the scratch rows S >= 2 (0 leaves them out), seeds = k and the scratch auto replay
  S >= 4, trunk + auto --trunk-auto)
  - repeatability: Kendall tau between two independent repeats of the whole proxy, with its bootstrap 95%
    interval (studies.fidelity_stats.rank_agreement): scratch seed 10 vs 11; scratch seeds = k, the mean of
    seeds 10.. vs the next k; auto seeds replayed (below) on the even vs the odd seeds; trunk, fine-tune noise
    only (trunk 0: ft 0 vs 2) and the whole trunk proxy repeated (trunk 0 ft 0 vs trunk 1 ft 1); trunk + auto
    seeds on trunk 0's fine-tunes vs trunk 1's;
  - with --truth (benchmarks/known_answer.py --json): tau of the first repeat against the ground truth's
    means, and whether the first repeat's front (top-1 vs GFLOPs, studies.records.pareto_front) holds one of
    the ground truth's best;
  - cost per architecture in epochs-equivalent, trunk included: E + T / N (a study builds one trunk per
    width; the benchmark builds a second only to repeat the proxy);
  - and per kind of run (scratch at P epochs, trunk T + fine-tune E), the normal model from all its repeats
    (`model`): the true spread between the architectures, one run's noise, and the runs each tau target takes.
Auto seeds are replayed with the study's own rule (studies.seeding.wanted, max_seeds = the pool's size): every
architecture starts with its first run, and each architecture the rule names gets its next run from its pool,
until the rule names none; its cost is the runs it used.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from statistics import fmean

from device_runs import done_runs, plan_line  # benchmarks/ is the script's own folder, so first on sys.path
from known_answer import write_plan

from search_space import GC, NL, SE, ArchSpec
from studies import config as study_config
from studies import seeding
from studies.fidelity import finite, rank_numbers, ranking_text
from studies.fidelity_stats import expected_taus, rank_agreement, spread_and_noise_of_repeats
from studies.records import Status, TrialRecord, pareto_front
from trainer import Schedule, Start, SubsetSpec, proxy_train, single_run, train_trunk

EXAMPLE = Path(__file__).resolve().parent.parent / "studies" / "examples" / "fashion-odd.toml"
BLOCKS = {"se": SE(16, "scale"), "gc": GC(16, "add"), "nl": NL(0.5, 1, "add")}
SCRATCH_FIRST_SEED = 10
#: trunk seed -> its fine-tune seeds (trunk 1's second, seed 3, only with --trunk-auto: the auto replay's pool)
TRUNK_FT = {0: (0, 2), 1: (1, 3)}


def placements(n: int) -> list[ArchSpec]:
    """The plain network, then n - 1 others of the learning-curve table's subspace (benchmarks/tabular: c2
    none; c3, c4, c5 each none, SE, GC or NL; 64 in all) in a fixed random order (seed 0): a subset without a
    choice of ours in it. No NL in c2: its 1,024 proxy positions take minutes a run on CPU."""
    kinds = [None, *BLOCKS]
    chosen = [dict(zip(("c3", "c4", "c5"), c, strict=True)) for c in itertools.product(kinds, repeat=3)]
    rest = chosen[1:]
    random.Random(0).shuffle(rest)
    return [ArchSpec("resnet18", stages={s: BLOCKS[k] for s, k in c.items() if k}) for c in [chosen[0], *rest][:n]]


def trunk_ft(args: argparse.Namespace) -> dict[int, tuple[int, ...]]:
    return TRUNK_FT if args.trunk_auto else {0: TRUNK_FT[0], 1: TRUNK_FT[1][:1]}


def one_run(key: dict, spec: ArchSpec, subset: SubsetSpec, schedule: Schedule, start: Start | None) -> dict:
    import torch

    torch.set_num_threads(1)
    began = time.perf_counter()
    top1 = proxy_train(spec, subset, schedule, start=start).top1
    return {**key, "top1": top1, "seconds": time.perf_counter() - began}


#: A run's key in the JSONL file. epochs: its own training's; trunk_epochs: its trunk's (None from scratch), so
#: fine-tunes of trunks of different lengths never pass for each other in one file.
KEY = ("mode", "trunk", "trunk_epochs", "seed", "name", "epochs")


def key_of(mode: str, trunk: int | None, trunk_epochs: int | None, seed: int, name: str, epochs: int) -> dict:
    return dict(zip(KEY, (mode, trunk, trunk_epochs, seed, name, epochs), strict=True))


def scratch_jobs(specs, schedule, args) -> list[tuple[dict, ArchSpec, Schedule]]:
    """(key, architecture, schedule) of every scratch run: seeds 10, 11, ... (S of them)."""
    return [(key_of("scratch", None, None, s, spec.name, schedule.epochs), spec, replace(schedule, seed=s))
            for s in range(SCRATCH_FIRST_SEED, SCRATCH_FIRST_SEED + args.scratch_seeds) for spec in specs]


def train_all(specs, subset, schedule, args, runs_file: Path) -> dict[tuple, float]:
    done = done_runs(runs_file, KEY)
    trunk_schedule = replace(schedule, epochs=args.ft_epochs)
    jobs = [(*job, None) for job in scratch_jobs(specs, schedule, args)]
    if args.trunk_epochs:
        import torch

        torch.set_num_threads(args.jobs)  # the trunks train here, before the pool starts: every core is free
        plain = ArchSpec(specs[0].backbone, specs[0].width)
        for t, fts in trunk_ft(args).items():
            keys = [key_of("trunk", t, args.trunk_epochs, f, spec.name, args.ft_epochs) for f in fts for spec in specs]
            if all(tuple(k.values()) in done for k in keys):
                continue  # every fine-tune of this trunk is in the runs file: the trunk is not needed again
            began = time.perf_counter()
            _, weights = train_trunk(plain, subset, replace(schedule, seed=t), args.trunk_epochs,
                                     root=runs_file.parent / f"{runs_file.stem}-trunks")
            print(f"{time.strftime('%H:%M:%S')} trunk {t} ready ({time.perf_counter() - began:.0f} s)",
                  file=sys.stderr, flush=True)
            start = Start(f"bench-trunk-{t}", str(weights))
            jobs += [(key_of("trunk", t, args.trunk_epochs, f, spec.name, args.ft_epochs), spec,
                      replace(trunk_schedule, seed=f), start) for f in fts for spec in specs]
    todo = [j for j in jobs if tuple(j[0].values()) not in done]
    with ProcessPoolExecutor(args.jobs) as pool, runs_file.open("a") as out:
        futures = [pool.submit(one_run, key, spec, subset, sched, start) for key, spec, sched, start in todo]
        for finished in as_completed(futures):
            r = finished.result()
            out.write(json.dumps(r) + "\n")
            out.flush()
            done[tuple(r[f] for f in KEY)] = r["top1"]
            print(f"{time.strftime('%H:%M:%S')} {r['mode']} trunk {r['trunk']} seed {r['seed']} {r['name']} "
                  f"top-1 {100 * r['top1']:.1f}% ({r['seconds']:.0f} s)", file=sys.stderr, flush=True)
    return done


def pool_records(runs: dict[str, list[float]], gflops: dict[str, float]) -> list[TrialRecord]:
    """One trained TrialRecord per architecture (numbered in `runs`' order) from its runs: their mean, and each
    run as a seed where there are several, as a study records `seeds = "auto"` trials."""
    return [TrialRecord(number=i, status=Status.TRAINED, spec_id=n, spec_name=n, top1=fmean(v), gflops=gflops[n],
                        params=1, seeds=tuple(v) if len(v) > 1 else ()) for i, (n, v) in enumerate(runs.items())]


def auto_runs(pools: dict[str, list[float]], gflops: dict[str, float], images: int,
              rule: Callable[..., set[int]] | None = None, workers: int | None = None,
              order: Callable[..., list[int]] | None = None, max_seeds: int | None = None,
              beyond: set[str] | None = None) -> dict[str, list[float]]:
    """studies.seeding's rule (or `rule`, as seeding.wanted takes it) replayed on pre-trained runs: the runs each
    architecture gets (a prefix of its pool; max_seeds = the smallest pool unless given).

    `workers` W: only the first W wanted seeds (in `order(want, records, noise)`'s order, else trial number's)
    are trained, and all come back before the next W are decided: W workers each asking for one seed when
    free (benchmarks/search_odds.py --workers). None: every wanted seed at once, a round at a time, as a
    study's workers drain what `seeding.top_up` queues. A seed wanted past the end of its pool (only with a
    `max_seeds` above the smallest pool: a real search's runs, search_odds.replayed) stops that architecture's
    seeding; its name goes into `beyond`."""
    names = list(pools)
    max_seeds = max_seeds or min(len(v) for v in pools.values())
    beyond = set() if beyond is None else beyond
    used = {n: 1 for n in names}
    attempts: dict[int, int] = {}
    while True:
        rs = pool_records({n: pools[n][:used[n]] for n in names}, gflops)
        model = seeding.noise(rs, images)
        want = [i for i in seeding.wanted(rs, attempts, (), model, max_seeds=max_seeds, rule=rule)
                if names[i] not in beyond]
        if workers:
            want = (order(want, rs, model) if order else want)[:workers]
        if not want:
            return {n: pools[n][:used[n]] for n in names}
        for i in want:
            if used[names[i]] == len(pools[names[i]]):
                beyond.add(names[i])
                continue
            used[names[i]] += 1
            attempts[i] = attempts.get(i, 0) + 1


def replay_auto(pools: dict[str, list[float]], gflops: dict[str, float], images: int) -> tuple[dict[str, float], float]:
    """(each architecture's mean, runs per architecture) of `auto_runs`."""
    used = auto_runs(pools, gflops, images)
    return {n: fmean(v) for n, v in used.items()}, fmean(len(v) for v in used.values())


def front_names(scores: dict[str, float], gflops: dict[str, float]) -> set[str]:
    rs = [TrialRecord(number=i, status=Status.TRAINED, spec_id=n, top1=scores[n], gflops=gflops[n], params=1)
          for i, n in enumerate(scores)]
    return {r.spec_id for r in pareto_front(rs, ("top1", "gflops"))}


def row(name: str, a: dict[str, float], b: dict[str, float], cost: float, truth: dict | None,
        gflops: dict[str, float], singles: Sequence[dict[str, float]] = ()) -> dict:
    """One mode's figures; `singles`: each single run of the mode (one seed's, one fine-tune's scores), for how
    many of them alone put a ground-truth best on the front - the first repeat's front is one draw of that."""
    names = list(a)
    out = {"mode": name, "epochs_per_arch": cost,
           "repeat_tau": rank_agreement([a[n] for n in names], [b[n] for n in names])["kendall_tau"].to_dict()}
    if truth is not None:
        out["truth_tau"] = rank_agreement([a[n] for n in names], [truth["means"][n] for n in names])[
            "kendall_tau"].to_dict()
        out["truth_best_on_front"] = sorted(front_names(a, gflops) & set(truth["best"]))
        if singles:
            hits = sum(bool(front_names(one, gflops) & set(truth["best"])) for one in singles)
            out["single_runs_with_truth_best_on_front"] = [hits, len(singles)]
    return out


def model(name: str, repeats: Sequence[dict[str, float]]) -> dict:
    """The normal model of one kind of run from all its complete repeats (architecture -> score each): the true
    spread between the architectures, one run's noise, one run's repeatability, and the runs per architecture
    for tau 0.6 against the mode's own true order and 0.7 between two repeats, as `attnas fidelity` reports
    them. Steadier than one pair of repeats over 16 architectures, whose tau interval is about +-0.3 wide.
    Two-way (studies.fidelity_stats.spread_and_noise_of_repeats): a repeat's shift of every architecture - a
    trunk's, most of all - is not noise to a ranking; what a new trunk changes placement by placement is."""
    spread, sigma = spread_and_noise_of_repeats(repeats)
    return {"mode": name, "repeats": len(repeats), **rank_numbers(spread, sigma), "sigma": finite(sigma),
            "one_run_repeat_tau": finite(expected_taus(spread, sigma, 1)[1])}


def table(specs: Sequence[ArchSpec], done: dict[tuple, float], args, epochs: int, gflops: dict[str, float],
          images: int, truth: dict | None) -> tuple[list[dict], list[dict]]:
    """(one row per mode, the normal model of each kind of run from all its complete repeats)."""
    names = [s.name for s in specs]

    def runs(mode: str, trunk: int | None, seeds: Sequence[int]) -> dict[str, list[float]]:
        own, trunk_epochs = (epochs, None) if mode == "scratch" else (args.ft_epochs, args.trunk_epochs)
        return {n: [done[mode, trunk, trunk_epochs, s, n, own] for s in seeds] for n in names}

    def mean(pool: dict[str, list[float]]) -> dict[str, float]:
        return {n: fmean(v) for n, v in pool.items()}

    scratch = list(range(SCRATCH_FIRST_SEED, SCRATCH_FIRST_SEED + args.scratch_seeds))
    singles = [mean(runs("scratch", None, [s])) for s in scratch]
    rows, models = [], []
    if len(singles) >= 2:  # --scratch-seeds 0: the trunk modes alone
        rows.append(row(f"scratch, {epochs} epochs, 1 seed", singles[0], singles[1], epochs, truth, gflops, singles))
        models.append(model(f"scratch, {epochs} epochs", singles))
    k = args.scratch_seeds // 2
    if k >= 2:
        rows.append(row(f"scratch, {epochs} epochs, seeds = {k}", mean(runs("scratch", None, scratch[:k])),
                        mean(runs("scratch", None, scratch[k:2 * k])), k * epochs, truth, gflops))
        (a, cost_a), (b, cost_b) = (replay_auto(runs("scratch", None, scratch[i::2]), gflops, images) for i in (0, 1))
        rows.append(row(f"scratch, {epochs} epochs, seeds = auto (max {len(scratch[0::2])})", a, b,
                        epochs * (cost_a + cost_b) / 2, truth, gflops))
    if args.trunk_epochs:
        cost = args.ft_epochs + args.trunk_epochs / len(specs)
        fts = trunk_ft(args)
        t0, t1 = runs("trunk", 0, fts[0]), runs("trunk", 1, fts[1])
        first = {n: v[0] for n, v in t0.items()}
        fine_tunes = [{n: v[i] for n, v in pool.items()} for pool in (t0, t1) for i in range(len(pool[names[0]]))]
        rows.append(row("trunk, fine-tune noise only (trunk 0: ft 0 vs 2)", first, {n: v[1] for n, v in t0.items()},
                        cost, truth, gflops, fine_tunes))
        rows.append(row("trunk, whole proxy (trunk 0 ft 0 vs trunk 1 ft 1)", first, {n: v[0] for n, v in t1.items()},
                        cost, truth, gflops))
        models.append(model(f"trunk {args.trunk_epochs} + fine-tune {args.ft_epochs}", fine_tunes))
        if not args.trunk_auto:
            return rows, models
        (a, cost_a), (b, cost_b) = (replay_auto(p, gflops, images) for p in (t0, t1))
        rows.append(row("trunk, seeds = auto (max 2; trunk 0 vs trunk 1)", a, b,
                        args.ft_epochs * (cost_a + cost_b) / 2 + args.trunk_epochs / len(specs), truth, gflops))
    return rows, models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", nargs="?", default=str(EXAMPLE))
    parser.add_argument("--truth", default=None, help="benchmarks/known_answer.py --json output")
    parser.add_argument("--placements", type=int, default=None)
    parser.add_argument("--scratch-seeds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=None, help="the scratch proxy's epochs (default: the study's)")
    parser.add_argument("--trunk-epochs", type=int, default=8, help="0: no trunk modes")
    parser.add_argument("--ft-epochs", type=int, default=2)
    parser.add_argument("--trunk-auto", action="store_true", help="one more fine-tune of trunk 1, for the auto row")
    parser.add_argument("--runs", default=None)
    parser.add_argument("--jobs", type=int, default=max(1, len(os.sched_getaffinity(0))))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plan", default=None, help="write the scratch runs still missing to this plan file "
                        "instead of training them (benchmarks/device_runs.py; needs --trunk-epochs 0)")
    args = parser.parse_args()
    if args.plan and args.trunk_epochs:
        parser.error("--plan: only scratch runs travel in a plan (a fine-tune needs its trunk); add --trunk-epochs 0")
    config = study_config.read_file(args.study)
    subset = config.data.subset()
    schedule = single_run(replace(config.schedule, epochs=args.epochs or config.schedule.epochs),
                          config.schedule.seed)
    specs = placements(args.placements) if args.placements else list(config.space.enumerate())
    runs_file = Path(args.runs or f"/tmp/proxy-modes-{config.name}.jsonl")
    if args.plan:
        done = done_runs(runs_file, KEY)
        write_plan(Path(args.plan), [plan_line(runs_file.name, k, spec, config.data.spec(), sched)
                                     for k, spec, sched in scratch_jobs(specs, schedule, args)
                                     if tuple(k.values()) not in done])
        return
    truth = None
    if args.truth:
        known = json.loads(Path(args.truth).read_text())
        truth = {"means": {r["name"]: r["mean"] for r in known["rows"]}, "best": known["best"]}
    from objectives import measure
    from trainer import load_cache

    images = config.data.holdout_per_class * load_cache(subset).num_classes  # built here, not by J racing workers
    gflops = {s.name: measure(s, config.objectives.resolution).gflops for s in specs}
    started = time.perf_counter()
    done = train_all(specs, subset, schedule, args, runs_file)
    rows, models = table(specs, done, args, schedule.epochs, gflops, images, truth)
    out = {"study": args.study, "architectures": [s.name for s in specs], "epochs": schedule.epochs,
           "trunk_epochs": args.trunk_epochs, "ft_epochs": args.ft_epochs, "rows": rows, "models": models,
           "runs": str(runs_file),
           "seconds": time.perf_counter() - started}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{config.name}: {len(specs)} architectures; scratch {schedule.epochs} epochs, trunk {args.trunk_epochs} "
          f"+ fine-tune {args.ft_epochs}; runs in {runs_file}")

    def tau(t: dict) -> str:
        return " ".join("  nan" if t[k] is None or math.isnan(t[k]) else f"{t[k]:+.2f}"
                        for k in ("value", "low", "high"))

    def held(r: dict) -> str:
        hits = r.get("single_runs_with_truth_best_on_front")
        return (", ".join(r["truth_best_on_front"]) or "none") + (f"; single runs: {hits[0]} of {hits[1]}"
                                                                   if hits else "")

    print(f"  {'mode':<52} {'repeat tau [95%]':>18} {'truth tau [95%]':>18} {'epochs/arch':>11}  truth best on front")
    for r in rows:
        truth_cols = (f"{tau(r['truth_tau']):>18}", held(r)) if truth else ("-", "-")
        print(f"  {r['mode']:<52} {tau(r['repeat_tau']):>18} {truth_cols[0]} {r['epochs_per_arch']:11.2f}  "
              f"{truth_cols[1]}")
    for m in models:
        print(f"  model, {m['mode']} ({m['repeats']} repeats): {model_text(m)}")


def model_text(m: dict) -> str:
    """`model`'s figures in `attnas fidelity`'s words, after one run's noise and repeatability."""
    if m["sigma"] is None or m["one_run_repeat_tau"] is None:
        return ranking_text(m)
    head = f"one run's sigma {100 * m['sigma']:.2f} pts, repeats at tau {m['one_run_repeat_tau']:+.2f}"
    return f"{head}; {ranking_text(m)}"


if __name__ == "__main__":
    main()
