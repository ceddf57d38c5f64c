"""Scoring one architecture: the deployment cost first, then (only if it is affordable) proxy accuracy.

Counting FLOPs takes a second; training takes minutes to hours. So the cost is known, and reported through
`on_cost`, before any training starts: a study can mark feasibility then, and a spec over the budget is
never trained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from search_space import ArchSpec
from trainer import EpochStats, Schedule, SubsetSpec, proxy_train

from .flops import Cost, measure

Status = Literal["ok", "diverged", "over_budget"]


@dataclass(frozen=True)
class Scores:
    """Every objective of one spec: cost at the deployment resolution and proxy accuracy (fractions)."""

    spec_id: str
    name: str
    gflops: float
    gflops_fvcore: float
    params: int
    feasible: bool
    status: Status
    top1: float | None = None
    top5: float | None = None
    epochs: int = 0
    seconds: float = 0.0
    images_per_s: float = 0.0
    checkpoint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scores:
        return cls(**data)


def evaluate(
    spec: ArchSpec,
    subset: SubsetSpec,
    schedule: Schedule,
    *,
    resolution: int = 224,
    max_gflops: float | None = None,
    device: str = "cpu",
    on_cost: Callable[[Cost], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    checkpoint_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> Scores:
    """Score `spec`: GFLOPs and params at `resolution`, then proxy top-1/top-5 unless over `max_gflops`."""
    cost = measure(spec, resolution)
    if on_cost is not None:
        on_cost(cost)
    base = {"spec_id": spec.id, "name": spec.name, "gflops": cost.gflops, "gflops_fvcore": cost.gflops_fvcore,
            "params": cost.params}
    if max_gflops is not None and cost.gflops > max_gflops:
        return Scores(**base, feasible=False, status="over_budget")
    result = proxy_train(spec, subset, schedule, device, on_epoch=on_epoch, checkpoint_dir=checkpoint_dir,
                         cache_dir=cache_dir, progress=progress)
    return Scores(**base, feasible=True, status=result.status, top1=result.top1, top5=result.top5,
                  epochs=result.epochs, seconds=result.seconds, images_per_s=result.images_per_s,
                  checkpoint=result.checkpoint)
