"""The known-answer task's ground truth: which attention placements truly win on "fashion-odd"?

Usage: .venv/bin/python benchmarks/known_answer.py [STUDY.toml] [--seeds S] [--first-seed F] [--epochs E]
           [--jobs J] [--runs FILE.jsonl] [--also FILE.jsonl ...] [--json]
           [--search [--gflops-tol T] [--export FILE.jsonl]] [--plan PLAN.jsonl]

Trains every architecture of the study's space (default studies/examples/fashion-odd.toml: 16 placements, the
task of trainer/oddone.py) with the study's data and schedule, but S seeds (F, F+1, ...) and E epochs each, J
single-thread processes at a time (N processes each with torch's default threads on shared cores crawl), and
prints per architecture: mean held-out top-1, its standard error over seeds (pooled seed sigma / sqrt(runs)),
the gap to the plain network in sigmas, and GFLOPs at the study's deployment resolution. "Best" = the highest
mean and every architecture not separated from it at 95% (|diff| < 1.96 sqrt(se_a^2 + se_b^2),
studies.fidelity_stats.indistinguishable): the set a search's front must hold for the search to have found
what matters. `--epochs` = the study's epochs and `--seeds 1` runs the shipped proxy itself (one repeat of it
per first seed; benchmarks/proxy_modes.py compares such repeats). Per-run lines go to stderr, and each run to
the JSONL file `--runs` as it ends; runs already there are not trained again, so a killed benchmark resumes.
Last, single runs' Kendall tau (seed against seed, and one seed against the others' mean): how far one run
of this protocol agrees with another, the ceiling for a proxy measured against it. `--search`: with every
ground-truth run in FILE, check the study's finished search (the storage STUDY names)
against it instead (search_against_truth); `--export` appends that search's own runs (each trained first run
and extra seed, with its seed) to a runs file. `--also`: runs of the same protocol from other files (such
an export) pooled into the truth, so a truth of 3 seeds grows by every search kept; a search is never checked
against a truth that holds its own runs. Why: the best of 16 means of 3 seeds is biased upward (the winner's
curse), and independent seeds are what shrink it. `--plan`: append the missing runs to PLAN for
benchmarks/device_runs.py (a lent GPU) instead of training them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from statistics import fmean, stdev

from device_runs import done_runs, plan_line, repeated, runs_in  # benchmarks/ is first on sys.path

from search_space import ArchSpec
from studies import config as study_config
from studies import seeding
from studies.fidelity_stats import indistinguishable, interval_text, pooled_sigma, rank_agreement
from studies.records import Status, TrialRecord, pick, record
from trainer import Schedule, SubsetSpec, proxy_train, single_run

EXAMPLE = Path(__file__).resolve().parent.parent / "studies" / "examples" / "fashion-odd.toml"


def one_run(spec: ArchSpec, seed: int, subset: SubsetSpec, schedule: Schedule) -> tuple[str, int, float, float]:
    import torch

    torch.set_num_threads(1)
    began = time.perf_counter()
    top1 = proxy_train(spec, subset, replace(schedule, seed=seed)).top1
    return spec.name, seed, top1, time.perf_counter() - began


def write_plan(path: Path, lines: list[str]) -> None:
    """Append a benchmark's missing runs to a plan (several benchmarks can fill one plan for one lease)."""
    with path.open("a") as f:
        f.writelines(line + "\n" for line in lines)
    print(f"{len(lines)} runs added to the plan {path}", file=sys.stderr)


def ground_truth(runs: dict[str, list[float]]) -> dict[str, object]:
    """Per architecture mean, se (pooled sigma / sqrt(runs)); the best and its ties at 95%."""
    sigma = pooled_sigma(runs)
    means = {n: fmean(v) for n, v in runs.items()}
    se = {n: sigma / math.sqrt(len(v)) for n, v in runs.items()}
    best = max(means, key=means.__getitem__)
    ties = {a if b == best else b for a, b in indistinguishable({n: (means[n], se[n]) for n in runs}) if best in (a, b)}
    return {"sigma": sigma, "means": means, "se": se, "best": sorted({best, *ties}, key=lambda n: -means[n])}


def one_run_agreement(runs: dict[str, list[float]], seeds: Sequence[int]) -> dict[str, dict]:
    """Kendall tau of single runs of this protocol, seed against seed and one seed against the mean of the
    others (bootstrap 95% over architectures): how far one run of the truth's own training can be trusted,
    the ceiling of any proxy's agreement with it."""
    names = list(runs)
    out = {}
    for i, j in itertools.combinations(range(len(seeds)), 2):
        out[f"seed {seeds[i]} vs {seeds[j]}"] = rank_agreement([runs[n][i] for n in names],
                                                               [runs[n][j] for n in names])["kendall_tau"].to_dict()
    for i in range(len(seeds) if len(seeds) > 2 else 0):
        rest = [fmean(v[:i] + v[i + 1:]) for v in (runs[n] for n in names)]
        out[f"seed {seeds[i]} vs the others' mean"] = rank_agreement([runs[n][i] for n in names],
                                                                     rest)["kendall_tau"].to_dict()
    return out


def search_against_truth(config, truth: dict, gflops: dict[str, float], images: int, gflops_tol: float) -> dict:
    """Where the study's search put each architecture it trained, beside the ground truth's rank: on the shown
    front, on the exact front only (shown as "same cost as" another), within noise of the front (a contender by
    studies.seeding's rule, with the study's own seeds and noise), or off it; and the verdict for the ground
    truth's best. Acceptance asks the best to be on the front: this prints what the search did, with the seeds
    it used."""
    from studies import storage as st
    from studies.records import front_candidates, objectives_of, pareto_front, records, same_cost

    study = st.load(st.open_to_read(st.resolve(config)), config.name, config)
    objectives = objectives_of(study)
    rs = records(study)
    candidates = front_candidates(rs, objectives)
    noise = seeding.noise(candidates, images)
    contenders, _ = seeding.contest(candidates, noise, objectives, gflops_tol)
    exact = pareto_front(candidates, objectives)
    shown = same_cost(exact, objectives, gflops_tol)
    under = {m: n for n, folded in shown.items() for m in folded}
    by_number = {r.number: r for r in candidates}
    order = sorted(truth["means"], key=lambda n: -truth["means"][n])

    def place(r) -> str:
        if r.number in shown:
            return "shown front"
        if r.number in under:
            return f"exact front, shown as same cost as {short(by_number[under[r.number]].spec)}"
        return "within noise of the front" if r.number in contenders else "off the front"

    rows = [{"name": r.spec.name, "short": short(r.spec), "trial": r.number, "top1": r.top1, "se": noise.se(r),
             "seeds": max(1, len(r.seeds)),
             "gflops": gflops[r.spec.name], "truth_mean": truth["means"][r.spec.name],
             "truth_rank": order.index(r.spec.name) + 1, "place": place(r)}
            for r in sorted(candidates, key=lambda r: -(r.top1 or 0))]
    placed = {row["name"]: row["place"] for row in rows}
    names = {s.name: short(s) for s in config.space.enumerate()}
    tau = rank_agreement([r["top1"] for r in rows], [r["truth_mean"] for r in rows])["kendall_tau"].to_dict()
    top = pick((by_number[n] for n in shown), math.inf)  # what `attnas pick` answers without a budget
    return {"study": config.name, "trained": len(candidates), "architectures": len(order),
            "runs": sum(row["seeds"] for row in rows), "seed_sigma": noise.sigma, "pooled": noise.pooled,
            "gflops_tol": gflops_tol, "truth_tau": tau, "rows": rows,
            "truth_best": {names[n]: placed.get(n, "not trained") for n in truth["best"]},
            "front_top": {"short": short(top.spec), "truth_rank": order.index(top.spec.name) + 1,
                          "truth_best": top.spec.name in truth["best"]}}


def search_runs(config) -> list[dict]:
    """The runs the study's search trained, as runs-file lines: each trained trial's first run (at the
    schedule's seed) and each extra seed of `seeds = "auto"` (at its own seed), with the study's name so that a
    pooled truth can leave a search's own runs out when it checks that search."""
    from studies import storage as st

    if isinstance(config.schedule.seeds, int) and config.schedule.seeds > 1:
        sys.exit(f"--export: {config.name} trains seeds = {config.schedule.seeds} inside each trial and keeps only "
                 "their mean; export a study with seeds = 1 or \"auto\"")
    study = st.load(st.open_to_read(st.resolve(config)), config.name, config)
    lines = (run_line(record(t), config.schedule.seed, config.name) for t in study.trials)  # each run apart:
    return [line for line in lines if line is not None]  # records() would merge a trial's seeds into their mean


def run_line(r: TrialRecord, seed: int, study: str) -> dict | None:
    """One trial's run as a runs-file line: a trained trial's own run at the study's `seed`, an extra seed's
    at its own; None for what trained nothing here (reused, diverged, failed, queued)."""
    if r.status not in (Status.TRAINED, Status.SEED) or r.top1 is None:
        return None
    return {"name": r.spec_name, "seed": r.seed if r.seed is not None else seed, "top1": r.top1,
            "seconds": r.seconds, "study": study}


def pooled_runs(runs: dict[str, list[float]], also: Sequence[Path], exclude: str | None,
                runs_file: Path | None = None) -> dict[str, list[float]]:
    """`runs` (read from `runs_file`) with every run of the `also` files of the same architectures appended; a
    file that holds runs of the study `exclude` (the search being checked) is refused, as a check against a
    truth made of its own runs is not a check; so is `runs_file` itself or a file given twice (counted twice,
    its runs would pass for independent seeds)."""
    if (again := repeated([runs_file, *also] if runs_file is not None else also)) is not None:
        sys.exit(f"--also: {again} is already in the truth (the --runs file or an earlier --also); give it once")
    pooled = {n: list(v) for n, v in runs.items()}
    for path in also:
        if not path.is_file():
            sys.exit(f"--also: {path} does not exist; give a runs file written by --runs or --export")
        for r in runs_in(path):
            if exclude is not None and r.get("study") == exclude:
                sys.exit(f"--also: {path} holds runs of {exclude}, the search being checked; leave it out")
            if r["name"] in pooled:
                pooled[r["name"]].append(r["top1"])
    return pooled


def short(spec: ArchSpec) -> str:
    """'c4:nl c5:gc', the tables' names: each stage's block kind, without its settings; 'plain' without any."""
    stages = [f"c{i}:{a.kind}" for i, a in enumerate(spec.stages, start=2) if a.kind != "none"]
    return " ".join(stages) or "plain"


def print_search(search: dict) -> None:
    sigma = f"{100 * search['seed_sigma']:.2f} pts pooled over {search['pooled']} trials" if search["seed_sigma"] \
        else "unmeasured (binomial errors)"
    tau = search["truth_tau"]
    print(f"search {search['study']}: trained {search['trained']} of {search['architectures']} architectures, "
          f"{search['runs']} runs; seed sigma {sigma}; front tolerance {search['gflops_tol']:.0%}; Kendall tau of "
          f"its means vs the truth {interval_text(tau)}")
    print(f"  {'architecture':<14} {'top-1':>6} {'± se':>5} {'seeds':>5} {'GFLOPs':>7} {'truth (rank)':>13}  place")
    for r in search["rows"]:
        print(f"  {r['short']:<14} {100 * r['top1']:5.1f}% {100 * (r['se'] or 0):5.1f} {r['seeds']:5d} "
              f"{r['gflops']:7.3f} {100 * r['truth_mean']:6.1f}% ({r['truth_rank']:2d})  {r['place']}")
    print("ground truth's best: " + "; ".join(f"{n}: {p}" for n, p in search["truth_best"].items()))
    top = search["front_top"]
    print(f"the shown front's most accurate member, {top['short']}, is the truth's {top['truth_rank']}: "
          + ("one of its best" if top["truth_best"] else "not one of its best"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", nargs="?", default=str(EXAMPLE))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--runs", default=None, help="JSONL of finished runs (resumed; default in /tmp)")
    parser.add_argument("--jobs", type=int, default=max(1, len(os.sched_getaffinity(0))))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--search", action="store_true", help="check the study's finished search (its storage, "
                        "as the study file names it) against this ground truth instead of printing it")
    parser.add_argument("--gflops-tol", type=float, default=0.02, help="for --search: the shown front's tolerance")
    parser.add_argument("--also", action="append", default=[], help="runs of the same protocol from another "
                        "file (e.g. a search's --export), pooled into the truth; repeatable")
    parser.add_argument("--export", default=None, help="for --search: append the search's own runs to this file")
    parser.add_argument("--plan", default=None, help="write the runs still missing to this plan file instead of "
                        "training them (benchmarks/device_runs.py trains a plan elsewhere)")
    args = parser.parse_args()
    config = study_config.read_file(args.study)
    subset = config.data.subset()
    schedule = single_run(replace(config.schedule, epochs=args.epochs), config.schedule.seed)
    specs = list(config.space.enumerate())
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    runs_file = Path(args.runs or f"/tmp/known-answer-{config.name}-{args.epochs}ep.jsonl")
    done = done_runs(runs_file)
    todo = [(spec, seed) for seed in seeds for spec in specs if (spec.name, seed) not in done]
    if args.plan:
        data = config.data.spec()
        write_plan(Path(args.plan), [plan_line(runs_file.name, {"name": spec.name, "seed": seed}, spec, data,
                                               replace(schedule, seed=seed)) for spec, seed in todo])
        return
    if args.search and todo:
        sys.exit(f"--search: the ground truth misses {len(todo)} runs in {runs_file}; give --runs the file that "
                 "holds them (or train them first, without --search)")
    from objectives import measure
    from trainer import load_cache

    load_cache(subset)  # built once here, not by J processes racing for its lock
    gflops = {s.name: measure(s, config.objectives.resolution).gflops for s in specs}
    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool, runs_file.open("a") as log:
        futures = [pool.submit(one_run, spec, seed, subset, schedule) for spec, seed in todo]
        for finished in as_completed(futures):
            name, seed, top1, seconds = finished.result()
            done[name, seed] = top1
            log.write(json.dumps({"name": name, "seed": seed, "top1": top1, "seconds": seconds}) + "\n")
            log.flush()
            print(f"{time.strftime('%H:%M:%S')} {name} seed {seed} top-1 {100 * top1:.1f}% ({seconds:.0f} s)",
                  file=sys.stderr, flush=True)
    runs = {s.name: [done[s.name, seed] for seed in seeds] for s in specs}
    pooled = pooled_runs(runs, [Path(p) for p in args.also], config.name if args.search else None, runs_file)
    truth = ground_truth(pooled) if args.seeds > 1 or args.also else {"sigma": math.nan, "best": [],
                                                                      "means": {n: v[0] for n, v in runs.items()}}
    sigma, means = truth["sigma"], truth["means"]
    plain = ArchSpec(specs[0].backbone, specs[0].width).name
    base = means.get(plain, math.nan)
    rows = [{"name": n, "mean": means[n], "runs": pooled[n], "se": truth.get("se", {}).get(n, math.nan),
             "gflops": gflops[n], "gap_to_plain_in_sigma": (means[n] - base) / sigma if sigma else math.nan,
             "best": n in truth["best"]} for n in sorted(runs, key=lambda n: -means[n])]
    spread = stdev(means.values()) / sigma if sigma and len(means) > 1 else math.nan
    out = {"study": args.study, "epochs": args.epochs, "seeds": list(seeds), "also": args.also, "seed_sigma": sigma,
           "spread_to_noise": spread, "rows": rows, "best": truth["best"], "seconds": time.perf_counter() - started,
           "one_run_tau": one_run_agreement(runs, list(seeds))}
    if args.search:
        images = config.data.holdout_per_class * load_cache(subset).num_classes
        search = search_against_truth(config, truth, gflops, images, args.gflops_tol)
        if args.export:
            export = Path(args.export)
            kept = done_runs(export, ("study", "name", "seed")) if export.is_file() else {}
            new = [r for r in search_runs(config) if (r["study"], r["name"], r["seed"]) not in kept]
            with export.open("a") as f:
                f.writelines(json.dumps(r) + "\n" for r in new)
            print(f"{len(new)} runs of {config.name} added to {export}", file=sys.stderr)
        if args.json:
            print(json.dumps(search, indent=2))
        else:
            print_search(search)
        return
    if args.json:
        print(json.dumps(out, indent=2))
        return
    also = f" + {sum(map(len, pooled.values())) - sum(map(len, runs.values()))} runs of {', '.join(args.also)}" \
        if args.also else ""
    print(f"{config.name}: {len(specs)} architectures x seeds {list(seeds)}{also}, {args.epochs} epochs; "
          f"{noise_text(sigma, spread)}; {out['seconds']:.0f} s")
    print(f"  {'architecture':<40} {'mean':>7} {'± se':>6} {'vs plain (σ)':>13} {'GFLOPs':>7}  best")
    for r in rows:
        print(row_text(r))
    for pair, tau in out["one_run_tau"].items():
        print(f"  one run, Kendall tau {pair}: {interval_text(tau)}")


def noise_text(sigma: float, spread: float) -> str:
    """The table's noise figures; one seed per architecture measures none, and says how to get them."""
    if not math.isfinite(sigma):
        return "seed sigma not measured (one run per architecture; --seeds 2 or more measures it)"
    return f"seed sigma {100 * sigma:.2f} pts, spread/noise {spread:.2f}"


def row_text(row: dict) -> str:
    """One architecture's line; a figure that needs the seed sigma shows as "-" without it."""
    se = f"{100 * row['se']:6.2f}" if math.isfinite(row["se"]) else f"{'-':>6}"
    gap = row["gap_to_plain_in_sigma"]
    gap_text = f"{gap:+13.1f}" if math.isfinite(gap) else f"{'-':>13}"
    return (f"  {row['name']:<40} {100 * row['mean']:6.1f}% {se} {gap_text} {row['gflops']:7.3f}  "
            f"{'*' if row['best'] else ''}")


if __name__ == "__main__":
    main()
