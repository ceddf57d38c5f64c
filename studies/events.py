"""What a worker tells whoever watches it, as plain data: a trial started, an epoch ended, a trial ended, a stale
trial was retried, the worker started or ended.

Why data and not text: the same events are drawn three ways (studies.logs: progress bars in a terminal, one
plain line per event in a log file, JSON lines for a log shipper), so the worker says what happened once and
each renderer decides how it looks. Every event is a frozen dataclass with `to_dict` (JSON-ready, the `event`
kind and an ISO `time` first). `TrialLog` builds one trial's events: its clock (elapsed, ETA) and its
top-1's noise (the ± of `attnas front`, studies.fidelity.standard_error) live there, not in the worker loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from statistics import fmean
from typing import TYPE_CHECKING, Any, ClassVar

from .environment import identity
from .fidelity import finite, holdout_images, standard_error

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from trainer import EpochStats, Schedule

    from .config import StudyConfig


@dataclass(frozen=True)
class TrialStarted:
    """A worker took a trial and knows its architecture and cost (before any training)."""

    kind: ClassVar[str] = "trial_start"
    trial: int
    name: str
    gflops: float | None
    params: int | None
    epochs: int
    seeds: int = 1
    seed: int | None = None  # a fidelity trial's own training seed
    retry_of: int | None = None  # the trial this one retries (its worker died or was stopped)
    worker: dict[str, Any] = field(default_factory=identity)
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class EpochEnded:
    """One epoch of a trial's training: `run` counts the seeds of a `seeds = k` schedule (0-based)."""

    kind: ClassVar[str] = "epoch"
    trial: int
    name: str
    epoch: int
    epochs: int
    run: int
    runs: int
    train_loss: float
    top1: float | None  # held-out top-1 of this epoch, where it was measured
    images_per_s: float
    elapsed_s: float  # since this worker started the trial
    eta_s: float | None  # to the trial's last epoch (all seeds), from the mean epoch time so far
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class TrialEnded:
    """A trial's end: outcome (trained, stopped, diverged, over_budget, reused, failed, interrupted), or
    taken_over (declared dead by another worker while this one was frozen or slow; this worker stored nothing,
    its retry owns the trial; an event outcome only, never a stored one)."""

    kind: ClassVar[str] = "trial_end"
    trial: int
    name: str | None
    outcome: str
    top1: float | None = None
    se: float | None = None  # top-1's standard error: over seeds with 2+, else the held-out set's binomial one
    seconds: float = 0.0  # wall time in this worker
    epochs: int = 0
    start_epoch: int = 0  # epochs its checkpoint held when it started (a resumed retry)
    gflops: float | None = None
    reused_from: int | None = None
    error: str | None = None
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class TrialRetried:
    """A running trial whose heartbeat went stale (its worker died or hung) was failed and queued again."""

    kind: ClassVar[str] = "trial_retry"
    trial: int
    grace_s: float
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class WorkerStarted:
    """A worker joined a study (the storage URL masked)."""

    kind: ClassVar[str] = "worker_start"
    study: str
    storage: str
    trials: int
    done: int
    device: str
    worker: dict[str, Any] = field(default_factory=identity)
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class WorkerEnded:
    """A worker stopped: what it ran, and the error that ended it, if one did."""

    kind: ClassVar[str] = "worker_end"
    ran: int = 0
    failed: int = 0
    reused: int = 0
    exhausted: str | None = None
    error: str | None = None
    worker: dict[str, Any] = field(default_factory=identity)
    time: float = field(default_factory=time.time)


Event = TrialStarted | EpochEnded | TrialEnded | TrialRetried | WorkerStarted | WorkerEnded


def stamp(moment: float) -> str:
    """A timestamp for a log line: local time with its UTC offset, to the second (sortable, unambiguous)."""
    return datetime.fromtimestamp(moment).astimezone().isoformat(timespec="seconds")


def to_dict(event: Event) -> dict[str, Any]:
    """JSON-ready: `event` (the kind) and `time` (ISO) first, then the fields; NaN/inf become null."""
    data = asdict(event)
    moment = data.pop("time")
    return {"event": event.kind, "time": stamp(moment),
            **{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}}


class TrialLog:
    """One trial's events, built as it goes: started now, each epoch with elapsed and ETA, its end with ±."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.name: str | None = None
        self.epochs = 0
        self.runs = 1
        self._t0 = time.monotonic()
        self._epoch_s: list[float] = []

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def started(self, record: dict[str, Any], schedule: Schedule, frozen: FrozenTrial,
                seed: int | None) -> TrialStarted:
        """The start, from the fresh record (name, cost), the schedule and the stored trial (a retry's origin)."""
        self.name, self.epochs = record["spec_name"], schedule.epochs
        self.runs = 1 if seed is not None else schedule.runs
        return TrialStarted(self.number, self.name, record.get("gflops"), record.get("params"), self.epochs,
                            self.runs, seed, frozen.system_attrs.get("failed_trial"))

    def epoch(self, run: int, stats: EpochStats) -> EpochEnded:
        """Seed `run`'s epoch; the ETA is the mean epoch time so far times the epochs left over all seeds."""
        self._epoch_s.append(stats.seconds)
        left = max(0, self.epochs - stats.epoch) + (self.runs - 1 - run) * self.epochs
        top1 = stats.top1 if stats.top1 is not None and math.isfinite(stats.top1) else None
        return EpochEnded(self.number, self.name or "", stats.epoch, self.epochs, run, self.runs, stats.train_loss,
                          top1, stats.images_per_s, self.elapsed(), fmean(self._epoch_s) * left)

    def watch(self, emit: Callable[[EpochEnded], None]) -> Callable[[int, EpochStats], None]:
        """What trainer.train_seeds calls per epoch of seed `run`: `emit` gets the epoch's event."""
        return lambda run, stats: emit(self.epoch(run, stats))

    def ended(self, record: dict[str, Any], config: StudyConfig | None, *, outcome: str | None = None,
              error: str | None = None) -> TrialEnded:
        """The end, from the trial's final record; `outcome` overrides it (failed, interrupted)."""
        top1 = record.get("top1")
        seeds = record.get("seeds") or []
        runs = list(seeds) if len(seeds) >= 2 else [top1] if top1 is not None else []
        se = finite(standard_error(runs, holdout(config))) if runs else None
        return TrialEnded(self.number, record.get("spec_name") or self.name, outcome or record.get("outcome")
                          or "failed", top1, se, self.elapsed(), int(record.get("epochs") or 0),
                          int(record.get("start_epoch") or 0), record.get("gflops"), record.get("reused_from"),
                          error or record.get("error"))


_HOLDOUT: dict[Any, int | None] = {}


def holdout(config: StudyConfig | None) -> int | None:
    """Held-out images of a study's data (for a single run's binomial ±), counted once per process."""
    if config is None:
        return None
    key = config.data
    if key not in _HOLDOUT:
        _HOLDOUT[key] = holdout_images(config)
    return _HOLDOUT[key]
