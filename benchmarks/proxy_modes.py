"""Scratch vs shared-trunk proxies, side by side: how repeatable is each one's ranking of attention placements?

Usage: .venv/bin/python benchmarks/proxy_modes.py [--data digits|fashion-mnist] [--placements N] [--epochs E]
           [--trunk-epochs T] [--images-per-class K] [--holdout-per-class H] [--json]

A skeleton of issue 15's item 4 (the full table - scratch + seeds = k and auto seeds, the known-answer task,
agreement with a deployed protocol - is for a later run). For N placements of ResNet-18 (the first N of a
fixed, documented order: every single-stage SE/GC/NL placement first, then pairs), it trains:
  - scratch: each placement from its own init, with seeds 0 and 1 (two independent repeats of the proxy);
  - trunk: a trunk per seed (seeds 0 and 1, `T` epochs each), each placement fine-tuned from it for E epochs;
    repeats are reported apart: (trunk 0, fine-tune 0) vs (trunk 0, fine-tune 1) - fine-tune noise only -
    and (trunk 0, fine-tune 0) vs (trunk 1, fine-tune 1) - the whole proxy repeated.
It prints Kendall tau between repeats with bootstrap 95% intervals (studies.fidelity_stats.rank_agreement) and
the cost per architecture in epochs-equivalent, trunk included (E + T / N).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from search_space import GC, NL, SE, STAGES, ArchSpec
from studies.fidelity_stats import rank_agreement
from trainer import Schedule, Start, SubsetSpec, dataset_root, proxy_train, train_trunk

BLOCKS = {"se": SE(16, "scale"), "gc": GC(16, "add"), "nl": NL(0.5, 1, "add")}


def placements(n: int) -> list[ArchSpec]:
    """The first `n` of: the plain network, every single-stage placement, then two-stage placements."""
    singles = [{s: k} for s in STAGES for k in BLOCKS]
    pairs = [{a: ka, b: kb} for a, b in itertools.combinations(STAGES, 2) for ka in BLOCKS for kb in BLOCKS]
    chosen = [{}, *singles, *pairs][:n]
    return [ArchSpec("resnet18", stages={s: BLOCKS[k] for s, k in c.items()}) for c in chosen]


def _trained(spec, subset, schedule, cache, label: str, start: Start | None = None) -> float:
    """One proxy run's held-out top-1, with a progress line on stderr (a full table takes hours on CPU)."""
    began = time.perf_counter()
    top1 = proxy_train(spec, subset, schedule, cache_dir=cache, start=start).top1
    print(f"{time.strftime('%H:%M:%S')} {label} {spec.name} top-1 {100 * top1:.1f}% "
          f"({time.perf_counter() - began:.0f} s)", file=sys.stderr, flush=True)
    return top1


def scratch(specs, subset, schedule, seed, cache) -> list[float]:
    return [_trained(s, subset, replace(schedule, seed=seed), cache, f"scratch {seed}") for s in specs]


def from_trunk(specs, subset, schedule, start: Start, seed, cache) -> list[float]:
    return [_trained(s, subset, replace(schedule, seed=seed), cache, f"{start.key} ft {seed}", start)
            for s in specs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--placements", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--trunk-epochs", type=int, default=4)
    parser.add_argument("--images-per-class", type=int, default=None)
    parser.add_argument("--holdout-per-class", type=int, default=30)
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    subset = SubsetSpec(root=dataset_root(args.data), train_per_class=args.images_per_class,
                        holdout_per_class=args.holdout_per_class, resolution=args.resolution)
    schedule = Schedule(epochs=args.epochs, batch_size=32, lr=0.1, width_mult=0.25, augment="pad_crop", flip=False,
                        amp=False, channels_last=False, warmup_epochs=min(1.0, args.epochs))
    specs = placements(args.placements)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cache = None  # the default cache ($ATTNAS_CACHE): built-in datasets are decoded once
        runs = {"scratch 0": scratch(specs, subset, schedule, 0, cache),
                "scratch 1": scratch(specs, subset, schedule, 1, cache)}
        for trunk_seed in (0, 1):
            _, weights = train_trunk(specs[0], subset, replace(schedule, seed=trunk_seed), args.trunk_epochs,
                                     root=Path(tmp) / "trunks", cache_dir=cache)
            start = Start(f"bench-trunk-{trunk_seed}", str(weights))
            for ft in ((0, 1) if trunk_seed == 0 else (1,)):
                runs[f"trunk {trunk_seed} ft {ft}"] = from_trunk(specs, subset, schedule, start, ft, cache)
    pairs = {"scratch (seed 0 vs 1)": ("scratch 0", "scratch 1"),
             "trunk, fine-tune noise only (trunk 0: ft 0 vs 1)": ("trunk 0 ft 0", "trunk 0 ft 1"),
             "trunk, whole proxy repeated (trunk 0 ft 0 vs trunk 1 ft 1)": ("trunk 0 ft 0", "trunk 1 ft 1")}
    cost = {"scratch": args.epochs, "trunk": args.epochs + args.trunk_epochs / len(specs)}
    rows = [{"repeat": name, **rank_agreement(runs[a], runs[b])["kendall_tau"].to_dict(),
             "epochs_per_arch": cost["scratch" if name.startswith("scratch") else "trunk"]}
            for name, (a, b) in pairs.items()]
    out = {"data": args.data, "placements": [s.name for s in specs], "epochs": args.epochs,
           "trunk_epochs": args.trunk_epochs, "rows": rows, "top1": runs,
           "seconds": time.perf_counter() - started}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{len(specs)} placements of ResNet-18 on {args.data}, {args.epochs} epochs (trunk: {args.trunk_epochs}); "
          f"{out['seconds']:.0f} s")
    for r in rows:
        tau = ", ".join("nan" if r[k] is None else f"{r[k]:+.2f}" for k in ("value", "low", "high"))
        print(f"  {r['repeat']:<58} tau (value, low, high) {tau}  {r['epochs_per_arch']:.2f} epochs/arch")


if __name__ == "__main__":
    main()
