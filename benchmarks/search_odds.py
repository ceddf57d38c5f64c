"""How often would the known-answer example's search put the known answer on its front, under a given proxy?

Usage: .venv/bin/python benchmarks/search_odds.py [STUDY.toml] --truth FILE.jsonl ... --proxy FILE.jsonl[@EPOCHS] ...
           [--max-seeds K] [--fixed] [--rule R] [--workers W [--fifo]] [--z Z] [--sims N] [--gflops-tol T] [--plug-in]
           [--own-sigma] [--replay FILE.jsonl ...] [--json]

One real search is one draw: with a proxy whose seed noise is as large as the truth's gaps, a search that
puts the truth's best on its front (or misses it) says little about the next one. This replays the study's
search many times on paper, from measured runs only, with the study's own rules:
  - the proxy: each architecture's measured proxy runs (every `--proxy` file pooled; `@EPOCHS` keeps that file's
    scratch runs of that many epochs, as benchmarks/proxy_modes.py writes them) give its mean and the pooled seed
    sigma; each simulated search first draws the proxy's *true* means around the measured ones (their standard
    error, sigma / sqrt(runs): the measured means are themselves a draw; `--plug-in` skips this and so
    overstates the odds), then every run as true mean + sigma * N(0, 1);
  - the search: every architecture of STUDY's space trained once (the example searches its whole space), then
    `seeds = "auto"` with `max_seeds` K replayed by studies.seeding's rule, or `--rule`'s (proxy_modes.auto_runs:
    every wanted seed a round at a time, or `--workers` W taking the most useful W at a time; `--fixed`:
    `seeds = K`, K runs of every architecture), then the shown front (studies.records.shown_front, tolerance T)
    and the contenders (studies.seeding.contest);
  - the answer: the truth files' best (benchmarks/known_answer.ground_truth on their runs pooled: its top and
    every architecture not separated from it at 95%), as measured, not redrawn.
It prints, per ground-truth best, how often it is on the shown front and how often at least within noise of it
(a contender), how often the shown front holds only ground-truth best, how often its most accurate member (the
one a user reads as the answer) is one of them, and the runs per architecture. The
model's assumptions (normal seed noise, one sigma for every architecture) are the ones the study's own
seeding rule makes. The truth's own uncertainty is not drawn: a figure says how often a search finds the answer
as measured, and its Monte Carlo error is about 1 point at 2,000 searches.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from statistics import NormalDist, fmean

import numpy as np
from device_runs import done_runs, repeated, runs_in
from known_answer import EXAMPLE, ground_truth, short  # benchmarks/ is the script's own folder
from proxy_modes import auto_runs, pool_records

from studies import config as study_config
from studies import seeding
from studies.fidelity_stats import indistinguishable, pooled_sigma
from studies.records import GFLOPS_TOL, MAXIMISE, TrialRecord, front_candidates, pareto_front, pick, shown_front


def measured(source: str) -> dict[str, list[float]]:
    """Name -> top-1 of each run in a runs file; `FILE@E`: only its scratch runs of E epochs."""
    path, _, epochs = source.partition("@")
    out: dict[str, list[float]] = defaultdict(list)
    for r in runs_in(Path(path)):
        if epochs and (r.get("mode", "scratch") != "scratch" or r.get("epochs") != int(epochs)):
            continue
        out[r["name"]].append(r["top1"])
    if not out:
        raise SystemExit(f"{source}: no runs (a runs file of benchmarks/known_answer.py or proxy_modes.py; "
                         "FILE@EPOCHS keeps the scratch runs of that many epochs)")
    return out


def pooled(sources: list[str]) -> dict[str, list[float]]:
    """The runs of every source together; a source given twice is refused, as known_answer.pooled_runs refuses
    it: counted twice, its runs would pass for independent seeds and shrink every standard error."""
    if (again := repeated(Path(s.partition("@")[0]) for s in sources)) is not None:  # FILE and FILE@E overlap too
        raise SystemExit(f"{again}: this runs file is given twice; give each once")
    runs: dict[str, list[float]] = defaultdict(list)
    for source in sources:
        for name, top1s in measured(source).items():
            runs[name].extend(top1s)
    return runs


def ties(cands: list[TrialRecord], noise: seeding.Noise) -> dict[int, set[int]]:
    """Trial -> the trials among `cands` it is not separated from (fidelity_stats.indistinguishable: the front's
    "within noise of" test, which the seeding rule uses too)."""
    out: dict[int, set[int]] = {r.number: set() for r in cands}
    for a, b in indistinguishable({str(r.number): (r.top1, noise.se(r) or 0.0) for r in cands}):
        out[int(a)].add(int(b))
        out[int(b)].add(int(a))
    return out


def one_sided(cands, noise, objectives, tol) -> set[int]:
    """seeding.undecided with "off the front" at one-sided 95% (z 1.645): within a cost level both directions."""
    keep = seeding.contest(cands, noise, objectives, tol, z=1.645)[0]
    return seeding.undecided([r for r in cands if r.number in keep], noise, objectives, tol)


def one_sided_across(cands, noise, objectives, tol) -> set[int]:
    """seeding.undecided with "off the front" one-sided only against a trial cheaper beyond the tolerance."""
    def costs(r: TrialRecord) -> list[float]:
        return [r.objective(o) for o in objectives if not MAXIMISE[o]]

    def beaten(a: TrialRecord) -> bool:
        for b in cands:
            if b is a or any(cb > ca * (1 + tol) for ca, cb in zip(costs(a), costs(b), strict=True)):
                continue  # b is costlier
            level = all(ca <= cb * (1 + tol) for ca, cb in zip(costs(a), costs(b), strict=True))
            if b.top1 - a.top1 >= (seeding.Z if level else 1.645) * math.hypot(noise.se(a) or 0.0, noise.se(b) or 0.0):
                return True
        return False

    return seeding.undecided([r for r in cands if not beaten(r)], noise, objectives, tol)


def lucb(undecided: Callable[..., set[int]], max_seeds: int) -> Callable[..., set[int]]:
    """Of `undecided`'s trials, each shown-front member and its most dangerous tied challenger only."""
    def rule(cands, noise, objectives, tol) -> set[int]:
        open_ = undecided(cands, noise, objectives, tol)
        by = {r.number: r for r in cands if r.number in open_}
        tied = ties(list(by.values()), noise)
        front = {r.number for r in shown_front(cands, objectives, tol) if r.number in open_}
        room = {n for n, r in by.items() if len(r.seeds) < max_seeds}
        need = set()
        for f in front:
            challengers = sorted((tied[f] - front) & room, key=lambda n: -(by[n].top1 + seeding.Z * noise.se(by[n])))
            need |= ({f} & room) | set(challengers[:1])
        return need
    return rule


def futility(floor: float, max_seeds: int) -> Callable[..., set[int]]:
    """seeding.undecided less the ties that max_seeds runs each would part with a chance below `floor`."""
    def power(a: TrialRecord, b: TrialRecord, sigma: float) -> float:
        final = seeding.Z * sigma * math.sqrt(2 / max_seeds)  # the gap that separates at max_seeds runs each
        runs = max(1, len(a.seeds)) + max(1, len(b.seeds))
        left = sigma * math.sqrt(max(1e-9, 2 * max_seeds - runs)) / max_seeds  # the final difference's sd, given these
        d = abs(a.top1 - b.top1)
        return NormalDist().cdf((d - final) / left) + NormalDist().cdf((-final - d) / left)

    def rule(cands, noise, objectives, tol) -> set[int]:
        if noise.sigma is None:
            return seeding.undecided(cands, noise, objectives, tol)
        keep = seeding.contest(cands, noise, objectives, tol)[0]
        by = {r.number: r for r in cands if r.number in keep}
        return {n for n, ts in ties(list(by.values()), noise).items()
                if any(power(by[n], by[m], noise.sigma) >= floor for m in ts)}
    return rule


def one_by_one(undecided: Callable[..., set[int]]) -> Callable[..., set[int]]:
    """`undecided` plus every exact-front member with one run while σ is pooled over fewer than 3 trials.

    The study's rule gives each front member its second run while σ is unmeasured; seeds a round at a time
    all come back before σ is used, but one worker's seeds would judge the front on the first job's σ, from
    one degree of freedom (under half the true σ in 38 % of draws; from three, 14 %)."""
    def rule(cands, noise, objectives, tol) -> set[int]:
        need = (undecided or seeding.undecided)(cands, noise, objectives, tol)
        if noise.pooled < 3:
            need |= {r.number for r in pareto_front(cands, objectives) if len(r.seeds) < 2}
        return need
    return rule


def first(want: list[int], rs: list[TrialRecord], noise: seeding.Noise, tol: float = GFLOPS_TOL) -> list[int]:
    """`want` most useful first: each undecided shown-front member and its most dangerous challenger (tied with
    it, in `want`, highest upper bound mean + 1.96 se), then the rest; each group by upper bound, then number.
    The pair LUCB (Kalyanakrishnan et al., ICML 2012) samples for best-arm identification, one seed at a time."""
    cands = front_candidates(rs)
    by = {r.number: r for r in cands}
    upper = {n: r.top1 + seeding.Z * (noise.se(r) or 0.0) for n, r in by.items()}
    open_ = seeding.undecided(cands, noise, gflops_tol=tol) | set(want)
    front = {r.number for r in shown_front(cands, ("top1", "gflops"), tol)} & open_
    tied = ties([by[n] for n in open_], noise)
    duel = front & set(want)
    for f in front:
        if challengers := (tied[f] & set(want)) - front:
            duel.add(max(challengers, key=lambda n: (upper[n], -n)))
    return sorted(want, key=lambda n: (n not in duel, -upper[n], n))


def stricter(rule: Callable[..., set[int]] | None, z: float) -> Callable[..., set[int]]:
    """The study's rule (`rule` must be None: attnas') with its tests at `z` instead of 1.96: more seeds before a
    tie counts as separated, as a sequential test looked at more often needs (the front's own ± stays 1.96)."""
    if rule is not None:
        raise SystemExit("--z: only with --rule attnas (the other rules fix their own tests)")
    return lambda cands, noise, objectives, tol: seeding.undecided(cands, noise, objectives, tol, z=z)


def rule_of(name: str, max_seeds: int) -> Callable[..., set[int]] | None:
    """`--rule`: which trials a simulated search seeds next, in studies.seeding.wanted's `rule` signature.

    attnas: the study's own rule (None). one-sided: a trial is off the front when a cheaper one is more accurate
    at one-sided 95% (z 1.645), not two-sided; ties still two-sided. Two trials of one cost level are each
    "cheaper" than the other, so there both directions are tested: a two-sided test at 90%. one-sided-across:
    one-sided only where the other is cheaper beyond the cost tolerance, two-sided within a cost level. lucb:
    only each tied shown-front member and its most dangerous tied challenger (highest mean + 1.96 se, not yet
    at max_seeds) get a seed, as best-arm identification (LUCB, Kalyanakrishnan et al. 2012) samples two arms a
    round; one-sided+lucb: both. futility:P: a tie stops getting seeds once the chance that max_seeds runs each
    would separate it, its present difference taken as true, is below P."""
    rules = {"attnas": None, "one-sided": one_sided, "one-sided-across": one_sided_across,
             "lucb": lucb(seeding.undecided, max_seeds), "one-sided+lucb": lucb(one_sided, max_seeds)}
    if name in rules:
        return rules[name]
    floor = name.partition("futility:")[2]
    if name.startswith("futility:") and floor.replace(".", "", 1).isdigit():
        return futility(float(floor), max_seeds)
    raise SystemExit(f"--rule {name}: unknown; use attnas, one-sided, one-sided-across, lucb, one-sided+lucb or "
                     "futility:P (e.g. futility:0.2)")


def one_search(means: dict[str, float], sigma: float | dict[str, float], gflops: dict[str, float], images: int,
               max_seeds: int, gflops_tol: float, rng: np.random.Generator, fixed: bool = False,
               rule: Callable[..., set[int]] | None = None, workers: int | None = None,
               fifo: bool = False, z: float = seeding.Z) -> tuple[set[str], set[str], float, str]:
    """(shown front, contenders, runs per architecture, the shown front's most accurate member) of one simulated
    search: `seeds = "auto"` with `max_seeds`, or (`fixed`) `seeds = max_seeds` for every architecture. The last
    is what a user of a flat-cost space reads off the front as "the answer", so it is the test that still means
    something when the truth's best is a tie of several placements, of which a front shows one."""
    spread = sigma if isinstance(sigma, dict) else dict.fromkeys(means, sigma)  # each architecture's own σ, or one
    pools = {n: list(m + spread[n] * rng.standard_normal(max_seeds)) for n, m in means.items()}
    if z != seeding.Z:
        rule = stricter(rule, z)
    if workers:  # seeds one per free worker: the front's second runs first, then most useful (or FIFO) first
        rule = one_by_one(rule)
    used = pools if fixed else auto_runs(pools, gflops, images, rule, workers, None if fifo else first)
    shown, contenders, top = front_of(used, gflops, images, gflops_tol)
    return shown, contenders, fmean(len(v) for v in used.values()), top


def front_of(used: dict[str, list[float]], gflops: dict[str, float], images: int,
             gflops_tol: float = GFLOPS_TOL) -> tuple[set[str], set[str], str]:
    """(shown front, contenders, the shown front's most accurate member) of a search whose architectures have
    these runs: what `attnas front` shows, what it names "within noise of the front" (the contenders, the shown
    front among them) and what `attnas pick` answers without a budget."""
    rs = pool_records(used, gflops)
    front = shown_front(rs, ("top1", "gflops"), gflops_tol)
    contenders, _ = seeding.contest(front_candidates(rs), seeding.noise(rs, images), gflops_tol=gflops_tol)
    return {r.spec_name for r in front}, {rs[i].spec_name for i in contenders}, pick(front, math.inf).spec_name


def replayed(path: str, gflops: dict[str, float], images: int, max_seeds: int) -> dict:
    """The study's own rule (a round at a time) replayed on a real search's own runs, in seed order: whether
    its workers seeded what the rule asks of those very draws. A replay that wants a run the search did not
    train names it in "beyond" (it then stops seeding that placement); "differ" lists (trained, replayed)."""
    pools: dict[str, list[float]] = defaultdict(list)
    for (name, _), top1 in sorted(done_runs(Path(path)).items()):  # by name, then seed
        if name in gflops:
            pools[name].append(top1)
    if not pools:
        raise SystemExit(f"--replay {path}: no runs of the study's architectures (a search's --export file)")
    beyond: set[str] = set()
    used = {n: len(v) for n, v in auto_runs(pools, gflops, images, max_seeds=max_seeds, beyond=beyond).items()}
    differ = {n: (len(pools[n]), used[n]) for n in pools if len(pools[n]) != used[n]}
    return {"file": path, "trained": fmean(len(v) for v in pools.values()), "replayed": fmean(used.values()),
            "beyond": sorted(beyond), "differ": differ}


def workers_text(workers: int | None, fifo: bool) -> str:
    if not workers:
        return ""
    return f", {workers} worker(s) taking seeds {'in trial-number order' if fifo else 'most useful first'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", nargs="?", default=str(EXAMPLE))
    parser.add_argument("--truth", action="append", required=True, help="the ground truth's runs "
                        "(benchmarks/known_answer.py; repeatable: files pooled, e.g. a search's --export)")
    parser.add_argument("--proxy", action="append", required=True, help="the proxy's runs: FILE or FILE@EPOCHS")
    parser.add_argument("--max-seeds", type=int, default=None, help="default: the study's max_seeds")
    parser.add_argument("--fixed", action="store_true", help="seeds = K (--max-seeds) for every architecture "
                        "instead of auto: the front auto seeds should match at less training")
    parser.add_argument("--rule", default="attnas", help="the auto-seeds rule: attnas (the study's own), one-sided, "
                        "one-sided-across, lucb, one-sided+lucb or futility:P - other rules weighed against attnas' "
                        "own on the same draws (rule_of)")
    parser.add_argument("--workers", type=int, default=None, help="seeds one per free worker, not a round at a "
                        "time: W workers each take the most useful wanted seed (`first`) when free (not shipped: "
                        "RESULTS, 'One seed per free worker'); default: every wanted seed a round at a time, as "
                        "the study's own workers do")
    parser.add_argument("--fifo", action="store_true", help="with --workers: seeds taken in trial-number order "
                        "instead of `first`'s")
    parser.add_argument("--z", type=float, default=seeding.Z, help="the seeding rule's two-sided z (default 1.96, "
                        "the study's): stricter for seeds decided one at a time, which test each tie more often")
    parser.add_argument("--replay", action="append", default=[], help="a real search's exported runs (repeatable): "
                        "the study's rule replayed on its own draws, against what it trained (`replayed`), beside "
                        "the simulated searches' spread of runs")
    parser.add_argument("--sims", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gflops-tol", type=float, default=GFLOPS_TOL)
    parser.add_argument("--plug-in", action="store_true", help="take the measured proxy means as its true ones")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--own-sigma", action="store_true", help="draw each architecture's runs with the seed sigma "
                        "of its own measured runs, not the pooled one (the search's rule still pools): whether "
                        "unequal noise explains real searches missing more often than the pooled model says")
    args = parser.parse_args()
    if args.fifo and not args.workers:
        raise SystemExit("--fifo: only with --workers W (a round at a time takes every wanted seed, in no order)")
    config = study_config.read_file(args.study)
    max_seeds = args.max_seeds or config.schedule.max_seeds or 1
    specs = {s.name: s for s in config.space.enumerate()}
    truth = ground_truth({n: v for n, v in pooled(args.truth).items() if n in specs})
    proxy = {n: v for n, v in pooled(args.proxy).items() if n in specs}
    if missing := sorted(set(specs) - set(proxy)):
        raise SystemExit(f"--proxy: no runs of {len(missing)} of the study's architectures, e.g. {missing[0]}")
    sigma = pooled_sigma(proxy)
    own = {n: float(np.std(v, ddof=1)) for n, v in proxy.items()} if args.own_sigma else None
    from objectives import measure

    gflops = {n: measure(s, config.objectives.resolution).gflops for n, s in specs.items()}
    from trainer import load_cache

    images = config.data.holdout_per_class * load_cache(config.data.subset()).num_classes
    rule = rule_of(args.rule, max_seeds)
    rng = np.random.default_rng(args.seed)
    on_front = dict.fromkeys(truth["best"], 0)
    in_noise = dict.fromkeys(truth["best"], 0)
    only_best = top_best = 0
    cost = []
    spread = own or dict.fromkeys(proxy, sigma)
    for _ in range(args.sims):
        means = {n: fmean(v) + (0 if args.plug_in else spread[n] / math.sqrt(len(v)) * rng.standard_normal())
                 for n, v in proxy.items()}
        shown, contenders, runs, top = one_search(means, spread, gflops, images, max_seeds, args.gflops_tol, rng,
                                                  args.fixed, rule, args.workers, args.fifo, args.z)
        for n in truth["best"]:
            on_front[n] += n in shown
            in_noise[n] += n in contenders
        only_best += shown <= set(truth["best"])
        top_best += top in truth["best"]
        cost.append(runs)
    out = {"study": config.name, "proxy": args.proxy, "proxy_runs": {n: len(v) for n, v in proxy.items()},
           "proxy_sigma": sigma, "max_seeds": max_seeds, "fixed": args.fixed, "rule": args.rule,
           "workers": args.workers, "fifo": args.fifo, "z": args.z,
           "sims": args.sims,
           "plug_in": args.plug_in, "own_sigma": args.own_sigma, "gflops_tol": args.gflops_tol,
           "truth_best": [short(specs[n]) for n in truth["best"]],
           "on_shown_front": {short(specs[n]): k / args.sims for n, k in on_front.items()},
           "within_noise": {short(specs[n]): k / args.sims for n, k in in_noise.items()},
           "front_only_truth_best": only_best / args.sims, "front_top_truth_best": top_best / args.sims,
           "runs_per_arch": fmean(cost), "runs_sd": float(np.std(cost)),
           "runs_p10_p90": [float(np.percentile(cost, 10)), float(np.percentile(cost, 90))],
           "replays": [replayed(f, gflops, images, max_seeds) for f in args.replay]}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{config.name}: proxy {' + '.join(args.proxy)} ({min(out['proxy_runs'].values())}-"
          f"{max(out['proxy_runs'].values())} runs per architecture, seed sigma {100 * sigma:.2f} pts); "
          f"{f'seeds = {max_seeds}' if args.fixed else f'auto seeds max {max_seeds}'}"
          f"{'' if args.fixed or args.rule == 'attnas' else f' (rule {args.rule})'}"
          f"{workers_text(args.workers, args.fifo)}{'' if args.z == seeding.Z else f', z {args.z}'}; "
          f"{args.sims} simulated searches"
          f"{' (plug-in means)' if args.plug_in else ''}{' (each its own sigma)' if args.own_sigma else ''}; "
          f"{out['runs_per_arch']:.2f} runs per architecture")
    for n in out["truth_best"]:
        print(f"  truth best {n:<12} on the shown front {out['on_shown_front'][n]:6.1%}   "
              f"within noise of it (a contender) {out['within_noise'][n]:6.1%}")
    print(f"  shown front holds only the truth's best: {out['front_only_truth_best']:.1%}")
    print(f"  shown front's most accurate member is one of the truth's best: {out['front_top_truth_best']:.1%}")
    lo, hi = out["runs_p10_p90"]
    print(f"  runs per architecture: {out['runs_per_arch']:.2f} on average, sd {out['runs_sd']:.2f} from search to "
          f"search, 10-90 %: {lo:.2f}-{hi:.2f}")
    for r in out["replays"]:
        extra = "".join(f"; {n}: {a} trained, {b} asked" for n, (a, b) in r["differ"].items())
        extra += f"; wanted beyond those trained: {', '.join(r['beyond'])}" if r["beyond"] else ""
        print(f"  {r['file']}: trained {r['trained']:.2f} runs per architecture; the study's rule replayed on its "
              f"own runs asks for {r['replayed']:.2f}{extra}")


if __name__ == "__main__":
    main()
