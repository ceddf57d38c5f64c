"""`seeds = k`: k runs of one architecture, one seed each, whose mean is the proxy's answer.

Why: on a hard task a single run's top-1 carries seed noise as large as the differences between attention
placements (benchmarks/RESULTS.md, proxy fidelity); the mean of k runs has 1/sqrt(k) of that noise, and the
runs' spread is what the front's error bars are drawn from (studies.fidelity.front_noise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from statistics import fmean
from typing import Any

from trainer.loop import proxy_train
from trainer.schedule import EpochStats, ProxyResult, Schedule, single_run


def seed_schedules(schedule: Schedule) -> list[Schedule]:
    """One single-run schedule per seed (`seed`, `seed`+1, ...): each has its own checkpoint folder.

    With `seeds = "auto"` that is one run (its run key the same as a plain one-seed schedule's); the study
    queues the others (studies.seeding)."""
    return [single_run(schedule, schedule.seed + i) for i in range(schedule.runs)]


def train_seeds(spec: Any, subset: Any, schedule: Schedule, device: Any = "cpu", *,
                on_epoch: Callable[[EpochStats], bool | None] | None = None,
                watch: Callable[[int, EpochStats], None] | None = None,
                train: Callable[..., ProxyResult] = proxy_train,
                **kwargs: Any) -> tuple[ProxyResult, list[ProxyResult]]:
    """(the mean result, each seed's result), the seeds trained one after another.

    `on_epoch` (early stopping) judges the first seed only; the others stop at the epoch it stopped at,
    so all k runs end at the same epoch and the mean is of like with like. A diverged run ends the set.
    `watch(seed index, stats)` sees every epoch of every seed (a log line per epoch), and decides nothing.
    """
    runs: list[ProxyResult] = []
    for index, single in enumerate(seed_schedules(schedule)):
        hook = on_epoch if index == 0 else _stop_like(runs[0])
        runs.append(train(spec, subset, single, device, on_epoch=_watched(hook, watch, index), **kwargs))
        if runs[-1].status == "diverged":
            break
    return mean_result(runs), runs


def _watched(hook: Callable[[EpochStats], bool | None] | None, watch: Callable[[int, EpochStats], None] | None,
             index: int) -> Callable[[EpochStats], bool | None] | None:
    """`hook`, with `watch` told of each epoch first; `hook` alone (None included) when nobody watches."""
    if watch is None:
        return hook

    def watched(stats: EpochStats) -> bool | None:
        watch(index, stats)
        return hook(stats) if hook is not None else None

    return watched


def _stop_like(first: ProxyResult) -> Callable[[EpochStats], bool] | None:
    if first.status != "stopped":
        return None
    return lambda stats: stats.epoch < first.epochs


def mean_result(runs: Sequence[ProxyResult]) -> ProxyResult:
    """The runs as one result: mean top-1/top-5 and curve, summed seconds; the first run's checkpoint."""
    if len(runs) == 1:
        return runs[0]
    first = runs[0]
    diverged = any(r.status == "diverged" for r in runs)
    length = min(len(r.history) for r in runs)
    history = tuple(_mean_stats([r.history[e] for r in runs]) for e in range(length))
    return replace(
        first,
        top1=0.0 if diverged else fmean(r.top1 for r in runs),
        top5=0.0 if diverged else fmean(r.top5 for r in runs),
        seconds=sum(r.seconds for r in runs),
        images_per_s=fmean(r.images_per_s for r in runs),
        status="diverged" if diverged else first.status,
        history=history,
        seed_top1=() if diverged else tuple(r.top1 for r in runs),
    )


def _mean_stats(stats: Sequence[EpochStats]) -> EpochStats:
    return EpochStats(epoch=stats[0].epoch, train_loss=fmean(s.train_loss for s in stats),
                      top1=fmean(s.top1 for s in stats), top5=fmean(s.top5 for s in stats),
                      seconds=sum(s.seconds for s in stats), images_per_s=fmean(s.images_per_s for s in stats))
