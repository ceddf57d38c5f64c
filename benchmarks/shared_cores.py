"""Total training throughput of N `attnas train` processes sharing this machine's cores, against one alone.

Each process trains the same spec on the same digits subset (its cache built beforehand) for the same
epochs, all started together; a process's images/s is proxy_train's (training images per training second,
over its epochs) and the total is their sum (equal work each, so they run side by side throughout). Two
modes, in the same run:
  sized    attnas' thread sizing (trainer.threads: the CPUs a process may use shared among the attnas
           processes on them), with OMP_NUM_THREADS unset
  default  torch's default threads in every process (ATTNAS_THREADS = what torch picks on this machine)
Target: sized, N processes together >= 0.9x the throughput of one process alone.
The processes register in a private folder (ATTNAS_HOST_DIR), so other attnas processes on the machine are
not counted; note the machine's load (`uptime`) with the figures.

    python benchmarks/shared_cores.py [--workers 1 2 4] [--epochs 3] [--images-per-class 100]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from search_space import ArchSpec
from trainer import write_digits_tree

ATTNAS = str(Path(sys.executable).parent / "attnas")


def base_env(tmp: Path) -> dict[str, str]:
    """The environment without any thread setting a user might have exported."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ATTNAS_THREADS")}
    return {**env, "ATTNAS_CACHE": str(tmp / "cache"), "ATTNAS_HOST_DIR": str(tmp / "workers"),
            "WANDB_MODE": "disabled"}


def torch_default_threads(env: dict[str, str]) -> int:
    """The intra-op threads torch itself picks here (no OMP_NUM_THREADS)."""
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


def train_command(tmp: Path, args: argparse.Namespace, run: str, epochs: int) -> list[str]:
    return [ATTNAS, "train", str(tmp / "spec.json"), "--data", str(tmp / "digits"), "--images-per-class",
            str(args.images_per_class), "--holdout-per-class", "10", "--resolution", "32", "--width-mult", "0.25",
            "--batch-size", "64", "--epochs", str(epochs), "--json", "--runs", str(tmp / "runs" / run)]


def together(tmp: Path, args: argparse.Namespace, n: int, env: dict[str, str], tag: str) -> list[float]:
    """Start n training processes at once; each one's training images/s."""
    procs = [subprocess.Popen(train_command(tmp, args, f"{tag}-{n}-{i}", args.epochs), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(n)]
    rates = []
    for proc in procs:
        out, err = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            raise SystemExit(f"attnas train failed: {err.strip().splitlines()[-1] if err.strip() else out}")
        rates.append(float(json.loads(out.strip().splitlines()[-1])["images_per_s"]))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images-per-class", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shared-cores-") as name:
        tmp = Path(name)
        write_digits_tree(tmp / "digits")
        (tmp / "spec.json").write_text(ArchSpec(backbone="resnet18").to_json())
        env = base_env(tmp)
        default = torch_default_threads(env)
        subprocess.run(train_command(tmp, args, "warm", 1), env=env, check=True, capture_output=True)  # the cache
        print(f"cpus allowed: {len(os.sched_getaffinity(0))}, torch default threads: {default}, "
              f"load before: {os.getloadavg()[0]:.2f}")
        modes = {"sized": env, "default": {**env, "ATTNAS_THREADS": str(default)}}
        totals: dict[tuple[str, int], float] = {}
        for n in args.workers:  # the modes take turns at each N, so a change in the machine's load hits both
            for mode, mode_env in modes.items():
                started = time.perf_counter()
                rates = together(tmp, args, n, mode_env, mode)
                totals[mode, n] = sum(rates)
                print(f"{mode:8s} N={n}: total {sum(rates):7.1f} images/s  (each: "
                      f"{', '.join(f'{r:.1f}' for r in rates)}; {time.perf_counter() - started:.0f} s wall)")
        print(f"\n{'N':>3} {'sized':>9} {'default':>9} {'sized/1':>8} {'default/1':>10} {'sized/default':>14}")
        for n in args.workers:
            s, d = totals["sized", n], totals["default", n]
            print(f"{n:>3} {s:9.1f} {d:9.1f} {s / totals['sized', args.workers[0]]:8.2f} "
                  f"{d / totals['default', args.workers[0]]:10.2f} {s / d:14.2f}")
        print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
