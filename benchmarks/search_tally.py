"""Did each kept real search of the known-answer example find the answer? Every search checked leave-one-out.

Usage: .venv/bin/python benchmarks/search_tally.py [STUDY.toml] --truth FILE.jsonl ... --search FILE.jsonl ...
           [--runs-needed K] [--draws N] [--json]

Each real search's runs are kept (`known_answer.py --search --export`), and each was checked, when it ended,
against the truth as it stood: the base runs pooled with the searches before it. The tally so counts against
truths of different sizes. This script recounts every search against one rule: the truth is the base runs
(`--truth`) pooled with every *other* search's runs (never its own, whose seeds would pass for independent
confirmation of its own answer), its best the top mean and every placement not separated from it at 95%
(known_answer.ground_truth). A search's answer is its shown front's most accurate member, the one a user reads
off it: its placement with the highest mean over that search's runs (the most accurate trial is always on the
front, and the shown front folds only less accurate members into it). Each row also gives Kendall tau between
the truth's means and the search's (its auto seeds pooled), and its first runs alone (one 16-epoch run per
placement): how far the proxy ranks all 16, not only the top, against a truth of hundreds of runs it holds none of.

`--runs-needed K`: how many runs per placement each of the issue's tau targets takes on this task, from the
kept runs alone. A k-run proxy is drawn N times, for k = 1..K, from each placement's runs that were trained
whatever the earlier results (every base run and each search's first run; a search's extra seeds went to its
contenders, so they only ever join the truth). Its means are ranked against every other run's (ground-truth
tau), and against a second, disjoint k-run draw (repeatability tau). Draws from a fixed pool share its
chance: two disjoint draws that together hold most of a placement's runs agree more than two new proxies
would, and a draw and the rest agree less. So beside them it prints what the normal model says
(studies.fidelity_stats.expected_taus, the model `attnas fidelity` reports too): ground-truth tau
(2/pi) asin(sqrt(s^2 / (s^2 + sigma^2/k))) against a perfect truth, repeatability (2/pi) asin(s^2 / (s^2 +
sigma^2/k)), and the k at which each reaches the issue's 0.6 and 0.7.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import fmean

import numpy as np
from device_runs import done_runs
from known_answer import EXAMPLE, ground_truth, short  # benchmarks/ is the script's own folder
from search_odds import front_of, pooled

from studies import config as study_config
from studies.fidelity_stats import expected_taus, interval_text, rank_agreement, runs_for_tau, spread_and_noise


def answer(runs: dict[str, list[float]]) -> tuple[str, float, int]:
    """(placement, mean top-1, runs) of a search's most accurate placement."""
    name = max(runs, key=lambda n: fmean(runs[n]))
    return name, fmean(runs[name]), len(runs[name])


def first_runs(search: str, names: set[str]) -> dict[str, float]:
    """Each placement's first run in a search (its lowest seed: extra seeds count up from the study's seed)."""
    first: dict[str, float] = {}
    for (name, _), top1 in sorted(done_runs(Path(search)).items()):  # by name, then seed
        if name in names:
            first.setdefault(name, top1)
    return first


def tau(scores: dict[str, float], truth: dict[str, float]) -> dict:
    """Kendall tau of `scores` against the truth's means over the placements both have, with its interval."""
    names = sorted(set(scores) & set(truth))
    return rank_agreement([scores[n] for n in names], [truth[n] for n in names])["kendall_tau"].to_dict()


def tally(bases: list[str], searches: list[str], names: set[str], gflops: dict[str, float] | None = None,
          images: int = 0) -> list[dict]:
    """One row per search: its answer, that answer's rank in the truth of every other file, and how its means
    (and its first runs alone, the one-run 16-epoch proxy) rank the placements against that truth's means.
    With `gflops` (and the held-out `images` its noise is judged with), also where the search's front puts each
    of the truth's best: "shown" on the front, "within noise" of it (a contender `attnas front` names under its
    table: a tie with the front that the search's seeds did not part), or "off" - the acceptance's "on its
    front", read both ways."""
    rows = []
    for search in searches:
        truth = ground_truth({n: v for n, v in pooled([*bases, *(s for s in searches if s != search)]).items()
                              if n in names})
        ranked = sorted(truth["means"], key=lambda n: -truth["means"][n])
        own = {n: v for n, v in pooled([search]).items() if n in names}
        name, mean, runs = answer(own)
        rows.append({"search": Path(search).name, "answer": name, "top1": mean, "runs": runs,
                     "truth_rank": ranked.index(name) + 1, "truth_best": truth["best"],
                     "hit": name in truth["best"], "runs_per_arch": fmean(len(v) for v in own.values()),
                     "truth_tau": tau({n: fmean(v) for n, v in own.items()}, truth["means"]),
                     "first_run_tau": tau(first_runs(search, names), truth["means"])})
        if gflops is not None:
            shown, contenders, _ = front_of(own, gflops, images)
            rows[-1]["truth_best_places"] = {n: "shown" if n in shown else "within noise" if n in contenders
                                             else "off" for n in truth["best"]}
    return rows


def base_taus(bases: list[str], searches: list[str], names: set[str]) -> dict[str, dict]:
    """The other way round: each seed of the base runs alone, and their mean, against the truth of every search
    pooled (which holds none of them): Kendall tau with its interval."""
    truth = ground_truth({n: v for n, v in pooled(searches).items() if n in names})["means"]
    by_seed: dict[int, dict[str, float]] = {}
    for base in bases:
        for (name, seed), top1 in done_runs(Path(base)).items():
            if name in names:
                by_seed.setdefault(seed, {})[name] = top1
    out = {f"seed {s}": tau(runs, truth) for s, runs in sorted(by_seed.items())}
    out["their mean"] = tau({n: fmean(v) for n, v in pooled(bases).items() if n in names}, truth)
    return out


def unconditioned(bases: list[str], searches: list[str], names: set[str]) -> tuple[dict, dict]:
    """(name -> runs trained whatever came before: every base run and each search's first; name -> the rest,
    a search's extra seeds, which its rule gave to contenders only)."""
    free = {n: list(v) for n, v in pooled(bases).items() if n in names}
    extra: dict[str, list[float]] = {n: [] for n in names}
    for search in searches:
        first = first_runs(search, names)
        for n, v in pooled([search]).items():
            if n in names:
                free.setdefault(n, []).append(first[n])
                rest = list(v)
                rest.remove(first[n])
                extra[n].extend(rest)
    return free, extra


def kendall(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall tau-a of two scorings, vectorised for the draws: a tied pair counts as neither. Single runs do tie
    (top-1 is a multiple of 1 / held-out images), where scipy's tau-b, which `tau` reports, reads up to 0.01
    higher on the known-answer runs (k = 1 and 6 of `--runs-needed`, measured); RESULTS quotes these figures."""
    i, j = np.triu_indices(len(x), 1)
    return float(np.mean(np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])))


def runs_needed(bases: list[str], searches: list[str], names: set[str], most: int, draws: int = 1000,
                seed: int = 0) -> tuple[list[dict], dict[str, float]]:
    """(rows, model). Rows, per k = 1..most: the mean and 10-90 % range, over `draws` draws, of a k-run proxy's
    Kendall tau against every run it does not hold (ground truth), and against a second k-run proxy disjoint
    from it (repeatability), with the normal model's. Model: the runs' spread and sigma, and the k at which it
    reaches tau 0.6 and a repeatability of 0.7.
    Why: one run's tau says what one run buys; the targets ask what it takes, and the runs answer that directly."""
    free, extra = unconditioned(bases, searches, names)
    order = sorted(free)
    fewest = min(len(free[n]) for n in order)
    if 2 * most > fewest:
        raise SystemExit(f"--runs-needed {most}: two disjoint {most}-run draws need {2 * most} unconditioned runs "
                         f"of every placement, and the files hold {fewest} of one; ask for {fewest // 2} or fewer")
    rng = np.random.default_rng(seed)
    spread, sigma = spread_and_noise(free)
    rows = []
    for k in range(1, most + 1):
        truth_taus, repeat_taus = [], []
        for _ in range(draws):
            a, b, t = np.empty(len(order)), np.empty(len(order)), np.empty(len(order))
            for i, n in enumerate(order):
                runs = np.asarray(free[n])[rng.permutation(len(free[n]))]
                a[i], b[i] = runs[:k].mean(), runs[k:2 * k].mean()
                t[i] = np.mean([*runs[k:], *extra[n]])
            truth_taus.append(kendall(a, t))
            repeat_taus.append(kendall(a, b))
        truth_model, repeat_model = expected_taus(spread, sigma, k)
        rows.append({"k": k, "truth_tau": summary(truth_taus), "repeat_tau": summary(repeat_taus),
                     "model": {"truth_tau": truth_model, "repeat_tau": repeat_model}})
    model = {"spread": spread, "sigma": sigma, "runs_for_truth_tau_0.6": runs_for_tau(0.6, spread, sigma),
             "runs_for_repeat_tau_0.7": runs_for_tau(0.7, spread, sigma, repeat=True)}
    return rows, model


def summary(values: list[float]) -> dict[str, float]:
    low, high = np.percentile(values, [10, 90])
    return {"mean": float(np.mean(values)), "p10": float(low), "p90": float(high)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", nargs="?", default=str(EXAMPLE))
    parser.add_argument("--truth", action="append", required=True,
                        help="the base ground-truth runs (benchmarks/known_answer.py); repeatable, pooled")
    parser.add_argument("--search", action="append", required=True, help="a search's exported runs (repeatable)")
    parser.add_argument("--runs-needed", type=int, default=0, metavar="K",
                        help="also: the tau of k-run proxies drawn from the kept runs, k = 1..K")
    parser.add_argument("--draws", type=int, default=1000, help="for --runs-needed: draws per k")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if len(args.search) < 2:
        raise SystemExit("--search: give at least two searches' runs files (each is checked against the others)")
    config = study_config.read_file(args.study)
    specs = {s.name: s for s in config.space.enumerate()}
    from objectives import measure
    from trainer import load_cache

    gflops = {n: measure(s, config.objectives.resolution).gflops for n, s in specs.items()}
    images = config.data.holdout_per_class * load_cache(config.data.subset()).num_classes  # as search_odds
    rows = tally(args.truth, args.search, set(specs), gflops, images)
    needed, model = (runs_needed(args.truth, args.search, set(specs), args.runs_needed, args.draws)
                     if args.runs_needed else ([], {}))
    if args.json:
        print(json.dumps({"searches": rows, "base": base_taus(args.truth, args.search, set(specs)),
                          **({"runs_needed": needed, "model": model} if needed else {})}, indent=2))
        return
    for r in rows:
        best = ", ".join(short(specs[n]) for n in r["truth_best"])
        print(f"{r['search']:<40} answer {short(specs[r['answer']]):<12} {100 * r['top1']:5.1f}% ({r['runs']} runs)"
              f"  truth rank {r['truth_rank']:>2}  {'hit ' if r['hit'] else 'miss'}  (truth's best: {best})")
        print(f"{'':<40} Kendall tau vs the truth's means: its means {interval_text(r['truth_tau'])} "
              f"({r['runs_per_arch']:.2f} runs per placement), its first runs {interval_text(r['first_run_tau'])}")
        places = ", ".join(f"{short(specs[n])} {p}" for n, p in r["truth_best_places"].items())
        print(f"{'':<40} the truth's best on its front: {places}")
    print(f"hits: {sum(r['hit'] for r in rows)} of {len(rows)} searches, each against the base runs and the "
          "other searches' runs")
    on = [r for r in rows if all(p != "off" for p in r["truth_best_places"].values())]
    shown = [r for r in rows if any(p == "shown" for p in r["truth_best_places"].values())]
    print(f"the truth's best on the front: every one shown or within noise of it in {len(on)} of {len(rows)} "
          f"searches; one of them shown in {len(shown)} of {len(rows)}")
    print(f"Kendall tau vs that truth, mean over the searches: their means "
          f"{fmean(r['truth_tau']['value'] for r in rows):+.2f}, their first runs alone "
          f"{fmean(r['first_run_tau']['value'] for r in rows):+.2f}")
    taus = ", ".join(f"{k} {interval_text(v)}" for k, v in base_taus(args.truth, args.search, set(specs)).items())
    print(f"the base runs against every search pooled, Kendall tau: {taus}")
    if needed:
        print(f"k-run proxies drawn from the kept runs ({args.draws} draws each; mean [10-90 %]):")
        for row in needed:
            t, r = row["truth_tau"], row["repeat_tau"]
            m = row["model"]
            print(f"  k = {row['k']}: vs every other run {t['mean']:+.2f} [{t['p10']:+.2f}, {t['p90']:+.2f}], "
                  f"vs another k-run draw {r['mean']:+.2f} [{r['p10']:+.2f}, {r['p90']:+.2f}]; "
                  f"normal model {m['truth_tau']:+.2f} and {m['repeat_tau']:+.2f}")
        print(f"normal model: true means spread {100 * model['spread']:.2f} pts, runs {100 * model['sigma']:.2f} pts "
              "around them; "
              f"ground-truth tau 0.6 at k = {model['runs_for_truth_tau_0.6']:.1f} runs, repeatability 0.7 at k = "
              f"{model['runs_for_repeat_tau_0.7']:.1f}")


if __name__ == "__main__":
    main()
