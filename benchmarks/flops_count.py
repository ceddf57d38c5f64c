"""How long counting costs: `count_flops` on ResNet-50 variants vs fvcore on torchvision's ResNet-50.

The target (issue 2): counting a ResNet-50 variant takes well under 2 s on a 2-core CPU. The baseline,
measured in the same run, is the least any fvcore count can cost: build torchvision's ResNet-50 and trace
it once. Run: `.venv/bin/python benchmarks/flops_count.py`.
"""

from __future__ import annotations

import time

import torch
import torchvision
from fvcore.nn import FlopCountAnalysis

from objectives import count_flops
from objectives.flops import _cache
from search_space import GC, NL, SE, ArchSpec, NoAttn


def baseline_seconds() -> float:
    start = time.perf_counter()
    model = torchvision.models.resnet50().eval()
    analysis = FlopCountAnalysis(model, torch.zeros(1, 3, 224, 224))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    analysis.total()
    return time.perf_counter() - start


def count_seconds(spec: ArchSpec) -> float:
    _cache.clear()
    start = time.perf_counter()
    count_flops(spec)
    return time.perf_counter() - start


def main() -> None:
    baseline_seconds()  # warm-up: first trace pays for imports and JIT set-up
    base = min(baseline_seconds() for _ in range(3))
    specs = [
        ArchSpec("resnet50"),
        ArchSpec(stages=(SE(16),) * 4),
        ArchSpec(stages=(NoAttn(), GC(16), GC(16), GC(16))),
        ArchSpec(stages=(SE(8), GC(8), NL(0.5, 3), NL(0.25, 1, "scale", True))),
    ]
    print(f"threads={torch.get_num_threads()}  baseline (torchvision ResNet-50, fvcore default): {base:.2f} s")
    print(f"{'spec':45s} {'seconds':>8s} {'vs baseline':>12s}")
    for spec in specs:
        seconds = min(count_seconds(spec) for _ in range(3))
        print(f"{spec.name:45s} {seconds:8.2f} {seconds / base:11.2f}x")


if __name__ == "__main__":
    main()
