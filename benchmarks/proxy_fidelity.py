"""How trustworthy is a short proxy? Read the learning-curve table and print rank agreement per epoch.

Usage: .venv/bin/python benchmarks/proxy_fidelity.py [benchmarks/tabular/table.csv] [--json]

The table holds held-out top-1 after every epoch for every architecture of a subspace and two seeds
(benchmarks/tabular/). A search scores each architecture once, with one seed, after a few epochs; this
script asks how well that ranks architectures compared with the full schedule:
  - tau/rho between one seed at epoch e and the *other* seed at the last epoch (independent noise, which
    is what a search faces), and between the seed means at e and at the last epoch;
  - seed-to-seed tau at the last epoch: the ceiling any proxy of this training can reach;
  - per-stage, per-kind effects on final top-1 against `none` in that stage, with bootstrap intervals:
    whether SE/GC/NL placements differ beyond noise at all on this task.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path
from statistics import fmean

import numpy as np

from search_space import STAGES, ArchSpec
from studies.fidelity_stats import interval_text, pooled_sigma, rank_agreement, spread_to_noise

DEFAULT = Path(__file__).parent / "tabular" / "table.csv"


def read_curves(path: Path) -> tuple[dict[tuple[str, int], dict[int, float]], dict[str, str]]:
    """(spec id, seed) -> {epoch: top-1}, and spec id -> spec name, from the long-format table."""
    curves: dict[tuple[str, int], dict[int, float]] = defaultdict(dict)
    names: dict[str, str] = {}
    with path.open() as f:
        for row in csv.DictReader(line for line in f if not line.startswith("#")):
            curves[(row["spec_id"], int(row["seed"]))][int(row["epoch"])] = float(row["top1"])
            names[row["spec_id"]] = row["spec_name"]
    return dict(curves), names


def complete_runs(curves: dict[tuple[str, int], dict[int, float]]) -> tuple[list[str], list[int], int]:
    """Architectures with every seed trained to the last epoch (a partial table is analysed on what is done)."""
    seeds = sorted({seed for _, seed in curves})
    last = max(max(c) for c in curves.values())
    ids = sorted({sid for sid, _ in curves})
    done = [sid for sid in ids if all(last in curves.get((sid, s), {}) for s in seeds)]
    return done, seeds, last


def agreement_by_epoch(curves, ids: list[str], seeds: list[int], last: int) -> list[dict]:
    rows = []
    for epoch in range(1, last + 1):
        a, b = seeds[0], seeds[-1]
        cross = rank_agreement([curves[(i, a)][epoch] for i in ids], [curves[(i, b)][last] for i in ids])
        mean_e = [fmean(curves[(i, s)][epoch] for s in seeds) for i in ids]
        mean_last = [fmean(curves[(i, s)][last] for s in seeds) for i in ids]
        means = rank_agreement(mean_e, mean_last)
        rows.append({"epoch": epoch, "cross_seed": {k: v.to_dict() for k, v in cross.items()},
                     "seed_mean": {k: v.to_dict() for k, v in means.items()}})
    return rows


def stage_effects(curves, ids: list[str], seeds: list[int], last: int, names: dict[str, str]) -> list[dict]:
    """Mean final top-1 with kind K in stage S minus with none there, bootstrap 95% over architectures."""
    final = {i: fmean(curves[(i, s)][last] for s in seeds) for i in ids}
    rng = np.random.default_rng(0)
    rows = []
    for stage in STAGES:
        by_kind: dict[str, list[float]] = defaultdict(list)
        for i in ids:
            by_kind[ArchSpec.from_name(names[i]).stage(stage).kind].append(final[i])
        if len(by_kind) < 2 or "none" not in by_kind:
            continue
        base = np.array(by_kind["none"])
        for kind, values in sorted(by_kind.items()):
            if kind == "none":
                continue
            v = np.array(values)
            draws = [rng.choice(v, len(v)).mean() - rng.choice(base, len(base)).mean() for _ in range(2000)]
            low, high = np.percentile(draws, [2.5, 97.5])
            rows.append({"stage": stage, "kind": kind, "n": len(v), "n_none": len(base),
                         "effect": float(v.mean() - base.mean()), "low": float(low), "high": float(high)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    if not args.table.is_file():
        sys.exit(f"error: no table at {args.table}; build it with benchmarks/tabular/build.py")
    curves, names = read_curves(args.table)
    ids, seeds, last = complete_runs(curves)
    if len(ids) < 3 or len(seeds) < 2:
        sys.exit(f"error: {args.table} has {len(ids)} complete architectures over {len(seeds)} seeds; "
                 "need >= 3 and 2 seeds (finish the build)")
    final_runs = {i: [curves[(i, s)][last] for s in seeds] for i in ids}
    ceiling = rank_agreement(*[[curves[(i, s)][last] for i in ids] for s in (seeds[0], seeds[-1])])
    out = {
        "table": str(args.table), "architectures": len(ids), "seeds": seeds, "epochs": last,
        "by_epoch": agreement_by_epoch(curves, ids, seeds, last),
        "seed_to_seed_at_last": {k: v.to_dict() for k, v in ceiling.items()},
        "seed_sigma_at_last": pooled_sigma(final_runs),
        "spread_over_sigma_at_last": spread_to_noise(final_runs),
        "stage_effects": stage_effects(curves, ids, seeds, last, names),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{len(ids)} architectures x seeds {seeds}, {last} epochs ({args.table})")
    print(f"seed-to-seed at epoch {last} (ceiling): tau {interval_text(out['seed_to_seed_at_last']['kendall_tau'])}, "
          f"rho {interval_text(out['seed_to_seed_at_last']['spearman_rho'])}")
    print(f"seed sigma at epoch {last}: {100 * out['seed_sigma_at_last']:.2f} points; spread of architecture "
          f"means / sigma = {out['spread_over_sigma_at_last']:.2f}")
    print("epoch  tau(seed A @e, seed B @last)   rho                 tau(mean @e, mean @last)")
    for row in out["by_epoch"]:
        cross, mean = row["cross_seed"], row["seed_mean"]
        print(f"{row['epoch']:>5}  {interval_text(cross['kendall_tau']):<29} "
              f"{interval_text(cross['spearman_rho']):<19} {interval_text(mean['kendall_tau'])}")
    print("stage kind   n  effect on final top-1 vs none (points, 95% interval)")
    for row in out["stage_effects"]:
        sign = "beyond noise" if row["low"] > 0 or row["high"] < 0 else "within noise"
        print(f"{row['stage']:<5} {row['kind']:<5} {row['n']:>3}  {100 * row['effect']:+.2f} "
              f"[{100 * row['low']:+.2f}, {100 * row['high']:+.2f}]  {sign}")


if __name__ == "__main__":
    main()
