"""What changes a proxy run's result bit for bit: thread count and the CPU's instruction set, not the run.

    nice .venv/bin/python benchmarks/determinism.py [--specs 3] [--study studies/examples/digits.toml]

Draws a few architectures from the study's space (random sampler, seed 3), then trains each with the study's
proxy in a fresh process per variant: 1 thread, 1 thread again, 2 threads, and 1 thread with the CPU kernels
limited to a baseline instruction set (ATEN_CPU_CAPABILITY=default, ONEDNN_MAX_CPU_ISA=SSE41), which stands
in for another CPU. Prints, per variant and spec, the final top-1, the first epoch's loss and a hash of the
final weights; the first two variants must agree bit for bit (exit status 1 if they do not).

`--replay` instead runs the study (20 trials, its sampler and seed) with training replaced by a fixed function of
the spec and prints every trial's params and values: diff its output between two checkouts (run with PYTHONPATH
set to each) to see whether code changes alone change what the sampler proposes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "1 thread, again": {"OMP_NUM_THREADS": "1"},
    "2 threads": {"OMP_NUM_THREADS": "2"},
    "1 thread, baseline ISA": {"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "default",
                               "ONEDNN_MAX_CPU_ISA": "SSE41"},
}


def draw_specs(study: Path, n: int) -> list[dict]:
    import optuna

    from search_space import suggest
    from studies.config import read_file

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = read_file(study).space
    sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    specs = []
    for _ in range(n):
        trial = sampler.ask()
        specs.append(suggest(trial, space).to_dict())
        sampler.tell(trial, 0.0)
    return specs


def train_all(study: Path, specs: list[dict], runs: Path) -> dict:
    """In this process: each spec trained with the study's proxy; top-1, first loss and weight hash."""
    import torch

    import trainer
    from search_space import ArchSpec
    from studies.config import read_file

    config = read_file(study)
    out = {"threads": torch.get_num_threads(), "isa": torch.backends.cpu.get_cpu_capability(), "runs": {}}
    for data in specs:
        spec = ArchSpec.from_dict(data)
        result = trainer.proxy_train(spec, config.data.subset(), config.schedule, "cpu", checkpoint_dir=runs)
        weights = torch.load(result.checkpoint, weights_only=True)["model"]
        digest = hashlib.sha256(b"".join(t.contiguous().numpy().tobytes() for t in weights.values()
                                         if t.is_floating_point())).hexdigest()[:12]
        out["runs"][spec.name] = {"top1": result.top1, "loss1": result.history[0].train_loss, "weights": digest}
    return out


def replay(study: Path) -> None:
    """The study in a temporary storage, training stubbed (top-1 from a hash of the spec id); one line a trial."""
    from dataclasses import replace

    import optuna

    import trainer
    from studies import worker
    from studies.config import read_file

    def train(spec, subset, schedule, device="cpu", **_):
        top1 = 0.5 + int(hashlib.sha256(spec.id.encode()).hexdigest()[:6], 16) / 2**25
        history = (trainer.EpochStats(schedule.epochs, 1.0, top1, 1.0, 0.1, 1e4),)
        return trainer.ProxyResult(top1, 1.0, schedule.epochs, 0.0, 1e4, "ok", None, history)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = read_file(study).with_overrides(storage=f"sqlite:///{tempfile.mkdtemp()}/replay.db")
    ctx, s = worker.start(config, join=True)
    worker.work(replace(ctx, train=train), s)
    for t in s.trials:
        print(t.number, t.state.name, t.values, sorted(t.params.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", type=Path, default=REPO / "studies/examples/digits.toml")
    parser.add_argument("--specs", type=int, default=3)
    parser.add_argument("--replay", action="store_true", help="print the study's trials with training stubbed")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replay:
        replay(args.study)
        return 0
    if args.child:
        print(json.dumps(train_all(args.study, json.loads(args.child), Path(tempfile.mkdtemp()))))
        return 0
    specs = draw_specs(args.study, args.specs)
    results = {}
    for name, extra in VARIANTS.items():
        env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
        done = subprocess.run([sys.executable, __file__, "--study", str(args.study), "--child", json.dumps(specs)],
                              env={**env, **extra}, check=True, capture_output=True, text=True, cwd=REPO)
        results[name] = json.loads(done.stdout.splitlines()[-1])
        runs = results[name]["runs"]
        cells = "  ".join(f"{r['top1']:.3f} {r['loss1']:.6f} {r['weights']}" for r in runs.values())
        print(f"{name:24} threads={results[name]['threads']} isa={results[name]['isa']:8} {cells}", flush=True)
    same = results["1 thread"]["runs"] == results["1 thread, again"]["runs"]
    print("1 thread twice: " + ("identical (top-1, loss, weights)" if same else "DIFFERENT"))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
