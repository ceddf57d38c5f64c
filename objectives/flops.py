"""FLOPs and parameters of a spec at its deployment resolution, counted with fvcore.

fvcore counts one multiply-add as one flop and by default skips elementwise ops and softmax. Those are
small in a plain ResNet but are most of what SE/GC gates and NL's affinity softmax add, so we report two
figures from one trace:

- `fvcore`: fvcore's default count (BatchNorm included) — comparable with published tables; torchvision's
  documented 4.089 G for ResNet-50 is `fvcore_no_bn`.
- `complete`: the default plus handles for what fvcore skips: add/sub/mul/div/sigmoid one flop per output
  element, softmax three per element (exp, sum, divide: three passes), mean one per input element (as
  fvcore counts adaptive_avg_pool2d), max_pool2d one per window element. ReLU stays uncounted in both:
  fvcore ignores it before consulting handles, and it is the same for every spec of a backbone.

An attention kind whose module uses an op neither list counts brings its own handle in its registry entry
(`KindEntry.flop_handles`); it joins the complete count, like the extras above, for specs holding that kind
only, so a plug-in can never move the figures of any other spec.

The model is counted in eval mode with batch 1, so BatchNorm statistics are never touched.
"""

from __future__ import annotations

import logging
import math
import threading
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch

with warnings.catch_warnings():  # fvcore's focal loss calls torch.jit.script at import: noise for our users
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import elementwise_flop_counter, get_shape

from search_space import ArchSpec, build_model
from search_space.registry import entry_for

#: Module prefix -> report section: the stem, the four stages, the classifier head.
SECTIONS = {"conv1": "stem", "bn1": "stem", "maxpool": "stem", "layer1": "c2", "layer2": "c3", "layer3": "c4",
            "layer4": "c5", "avgpool": "head", "fc": "head"}


def _max_pool_flops(inputs: list[Any], outputs: list[Any]) -> int:
    kernel = inputs[1].toIValue() if hasattr(inputs[1], "toIValue") else None
    area = math.prod(kernel) if kernel else 1
    return math.prod(get_shape(outputs[0])) * area


EXTRA_HANDLES = {
    **{f"aten::{op}": elementwise_flop_counter(0, 1) for op in ("add", "add_", "sub", "mul", "mul_", "div", "sigmoid")},
    "aten::softmax": elementwise_flop_counter(0, 3),
    "aten::mean": elementwise_flop_counter(1, 0),
    "aten::max_pool2d": _max_pool_flops,
}
#: The names fvcore's by_operator() uses for the extra handles (the op name without `aten::`).
EXTRA_OPERATORS = frozenset(name.split("::")[1] for name in EXTRA_HANDLES)


def spec_handles(spec: ArchSpec) -> dict[str, Any]:
    """The extra handles plus those the kinds in `spec` declare; refuses one that would recount an extra op."""
    handles = dict(EXTRA_HANDLES)
    for attn in spec.stages:
        kind = entry_for(attn)
        for op, handle in (kind.flop_handles if kind is not None else {}).items():
            if op in EXTRA_HANDLES:
                raise ValueError(f"attention kind {kind.name!r} declares a FLOP handle for {op}, which objectives "
                                 "already counts; drop it from the kind's flop_handles")
            handles[op] = handle
    return handles


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one spec at one resolution; integers are flops (multiply-add = 1)."""

    resolution: int
    complete: int
    fvcore: int
    fvcore_no_bn: int
    per_stage: dict[str, int]
    by_operator: dict[str, int]
    uncounted: tuple[str, ...]

    @property
    def gflops(self) -> float:
        return self.complete / 1e9

    @property
    def gflops_fvcore(self) -> float:
        return self.fvcore / 1e9

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["uncounted"] = list(self.uncounted)
        return out


@dataclass(frozen=True)
class Cost:
    """What a spec costs to deploy: the objectives that need no training."""

    gflops: float
    gflops_fvcore: float
    params: int


_cache: dict[tuple[str, int], tuple[FlopCount, int]] = {}
_lock = threading.Lock()


def count_flops(spec: ArchSpec, resolution: int = 224) -> FlopCount:
    """fvcore FLOPs of `spec` at `resolution` x `resolution` px, default and complete (cached by spec id)."""
    return _counted(spec, resolution)[0]


def count_params(spec: ArchSpec, num_classes: int = 1000) -> int:
    """Trainable parameters of the deployed network (BatchNorm running statistics are buffers, not counted)."""
    if num_classes == 1000:
        return _counted(spec, 224)[1]
    return sum(p.numel() for p in build_model(spec, num_classes).parameters())


def measure(spec: ArchSpec, resolution: int = 224) -> Cost:
    """GFLOPs (complete and fvcore-default) and parameters: everything known before training."""
    flops, params = _counted(spec, resolution)
    return Cost(gflops=flops.gflops, gflops_fvcore=flops.gflops_fvcore, params=params)


def _counted(spec: ArchSpec, resolution: int) -> tuple[FlopCount, int]:
    if resolution < 32:
        raise ValueError(f"resolution: {resolution} px is too small to deploy a ResNet; use 32 or more (e.g. 224)")
    key = (spec.id, resolution)
    with _lock:
        if key not in _cache:
            _cache[key] = _count(spec, resolution)
        return _cache[key]


def _count(spec: ArchSpec, resolution: int) -> tuple[FlopCount, int]:
    model = build_model(spec).eval()
    params = sum(p.numel() for p in model.parameters())
    handles = spec_handles(spec)
    analysis = FlopCountAnalysis(model, torch.zeros(1, 3, resolution, resolution)).set_op_handle(**handles)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    logging.getLogger("fvcore.nn.jit_analysis").setLevel(logging.ERROR)
    with torch.no_grad():
        complete = int(analysis.total())
    by_operator = {op: int(n) for op, n in analysis.by_operator().items()}
    extra = {name.split("::")[1] for name in handles}
    fvcore = complete - sum(n for op, n in by_operator.items() if op in extra)
    by_module = analysis.by_module()
    per_stage: dict[str, int] = {}
    for prefix, section in SECTIONS.items():
        per_stage[section] = per_stage.get(section, 0) + int(by_module.get(prefix, 0))
    flops = FlopCount(
        resolution=resolution,
        complete=complete,
        fvcore=fvcore,
        fvcore_no_bn=fvcore - by_operator.get("batch_norm", 0),
        per_stage=per_stage,
        by_operator=by_operator,
        uncounted=tuple(sorted(analysis.unsupported_ops())),
    )
    return flops, params
