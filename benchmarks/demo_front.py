"""Is the digits demo's Pareto front worth looking at? Run the demo study for 3 sampler seeds and check each front.

    nice -n 15 .venv/bin/python benchmarks/demo_front.py [--study studies/examples/digits.toml] [--seeds 0 1 2]

Each seed runs the real `attnas search` (the shipped study file with only `sampler.seed` and `storage` changed,
into a temporary folder, `--no-wandb`), then reads `attnas front --json`. One line per seed: front size, GFLOPs
span, wall seconds, and pass/fail against the issue's bar (>= 4 architectures over >= 0.2 GFLOPs).
Exit status 1 if any seed fails.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIN_POINTS, MIN_SPAN = 4, 0.2


def seeded_study(source: Path, seed: int, folder: Path) -> Path:
    """The study file with its sampler seed and storage replaced (everything else as shipped)."""
    text = source.read_text()
    text, n_storage = re.subn(r'(?m)^storage\s*=.*$', f'storage = "sqlite:///{folder}/study.db"', text)
    text, n_seed = re.subn(r'(?m)^seed\s*=.*$', f"seed = {seed}", text)
    if n_storage != 1 or n_seed != 1:
        raise SystemExit(f"error: {source} needs exactly one top-level `storage =` and one `seed =` line")
    path = folder / f"seed{seed}.toml"
    path.write_text(text)
    return path


def run_seed(study: Path, seed: int, attnas: str) -> tuple[list[dict], float]:
    with tempfile.TemporaryDirectory(prefix=f"demo-front-{seed}-") as tmp:
        path = seeded_study(study, seed, Path(tmp))
        started = time.perf_counter()
        subprocess.run([attnas, "search", str(path), "--no-wandb", "--report", f"{tmp}/report.html"],
                       check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        front = subprocess.run([attnas, "front", str(path), "--json"], check=True, capture_output=True, text=True)
        return json.loads(front.stdout), wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", type=Path, default=REPO / "studies/examples/digits.toml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    attnas = str(Path(sys.executable).parent / "attnas")
    failed = 0
    for seed in args.seeds:
        rows, wall = run_seed(args.study, seed, attnas)
        gflops = [r["gflops"] for r in rows]
        span = max(gflops) - min(gflops) if gflops else 0.0
        ok = len(rows) >= MIN_POINTS and span >= MIN_SPAN
        failed += not ok
        points = ", ".join(f"{r['gflops']:.3f}/{100 * r['top1']:.1f}%" for r in sorted(rows, key=lambda r: r["gflops"]))
        print(f"seed {seed}: front {len(rows)} points, span {span:.3f} GFLOPs, {wall:.0f} s -> "
              f"{'PASS' if ok else 'FAIL'} (need >= {MIN_POINTS} over >= {MIN_SPAN})  [{points}]", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
