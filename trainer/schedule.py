"""The training recipe (`Schedule`) and what a run reports (`EpochStats`, `ProxyResult`), as plain data.

All three round-trip through JSON so studies can store them in trial attributes and the CLI can print
them; the schedule's content hash keys checkpoints, so changing any knob never resumes an old run.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

#: The `augment` values trainer.augment implements.
AUGMENTS = ("random_resized_crop", "pad_crop", "none")

Status = Literal["ok", "diverged", "stopped"]  # stopped: the caller's on_epoch said so
#: `max_seeds` by default: 4 runs halve a single run's seed noise (1/sqrt(4)) at most 4x its cost.
MAX_SEEDS = 4


class ScheduleError(ValueError):
    """A schedule that cannot be trained; the message names the field and the fix."""


@dataclass(frozen=True)
class Schedule:
    """SGD with Nesterov momentum, linear warm-up then cosine decay to zero, label smoothing.

    `lr` is the peak learning rate for `batch_size` (scale it linearly if you change the batch size).
    Weight decay applies to weights only, never to norm scales and biases (params with ndim <= 1):
    decaying those only fights the normalisation. `amp` (bf16 autocast) takes effect on CUDA only;
    CPU runs stay in fp32 so they are exactly reproducible. `channels_last` helps on both.
    """

    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-5
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    width_mult: float = 1.0
    seed: int = 0
    compile: bool = False
    augment: str = "random_resized_crop"
    min_scale: float = 0.35
    flip: bool = True
    amp: bool = True
    channels_last: bool = True
    #: Runs per architecture, seeds `seed`, `seed`+1, ...; their mean is the result (trainer.train_seeds).
    #: "auto": one run each, and a study adds runs only where its front is undecided (studies.seeding).
    seeds: int | Literal["auto"] = 1
    #: With `seeds = "auto"`: the most runs one architecture gets (its first included).
    max_seeds: int = MAX_SEEDS

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "seeds", "max_seeds"):
            value = getattr(self, name)
            if name == "seeds" and value == "auto":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                hint = ' or "auto"' if name == "seeds" else ""
                raise ScheduleError(f"{name}: {value!r} must be a whole number >= 1{hint}")
        if self.max_seeds != MAX_SEEDS and self.seeds != "auto":
            raise ScheduleError(f'max_seeds: {self.max_seeds!r} applies to seeds = "auto" only; set seeds = "auto" '
                                "or remove max_seeds")
        if self.seeds == "auto" and self.max_seeds < 2:
            raise ScheduleError(f'max_seeds: {self.max_seeds!r} must be >= 2 with seeds = "auto" (use seeds = 1 '
                                "for one run per architecture)")
        for name in ("lr", "width_mult"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise ScheduleError(f"{name}: {value!r} must be a positive number")
        if not 0 <= self.label_smoothing < 1:
            raise ScheduleError(f"label_smoothing: {self.label_smoothing!r} must be in [0, 1), e.g. 0.1")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ScheduleError(f"warmup_epochs: {self.warmup_epochs!r} must be between 0 and epochs")
        if self.augment not in AUGMENTS:
            raise ScheduleError(f"augment: {self.augment!r} is not one of {', '.join(AUGMENTS)}")
        if not 0 < self.min_scale <= 1:
            raise ScheduleError(f"min_scale: {self.min_scale!r} must be in (0, 1], e.g. 0.35")

    @property
    def auto_seeds(self) -> bool:
        """Whether a study adds seeds where its front is undecided (`seeds = "auto"`)."""
        return self.seeds == "auto"

    @property
    def runs(self) -> int:
        """Runs a trial trains at once: `seeds`, or 1 with "auto" (the others come as their own jobs)."""
        return 1 if self.seeds == "auto" else int(self.seeds)

    @property
    def id(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """All fields, except `seeds` and `max_seeds` at their defaults (1, MAX_SEEDS): run keys (checkpoint
        folders) and study identities written before they existed stay valid."""
        data = asdict(self)
        if self.seeds == 1:
            del data["seeds"]
        if self.max_seeds == MAX_SEEDS:
            del data["max_seeds"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schedule:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ScheduleError(f"schedule: unknown field(s) {sorted(unknown)}; see trainer.Schedule")
        return cls(**data)

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """Learning rate of optimizer step `step` (0-based): linear warm-up, then cosine to zero."""
        warmup = round(self.warmup_epochs * steps_per_epoch)
        total = self.epochs * steps_per_epoch
        if step < warmup:
            return self.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * self.lr * (1 + math.cos(math.pi * progress))



def single_run(schedule: Schedule, seed: int) -> Schedule:
    """One run of `schedule` with training seed `seed`: the run key of a plain one-seed schedule. max_seeds goes
    back to its default with seeds (a schedule refuses a max_seeds without seeds = "auto"), so a run of an auto
    study is the same run as a one-seed study's. Here, beside Schedule, so trainer.trunk can use it too."""
    return replace(schedule, seed=seed, seeds=1, max_seeds=MAX_SEEDS)


@dataclass(frozen=True)
class EpochStats:
    """One epoch: mean training loss, held-out top-1/top-5 (fractions), wall seconds, training images/s."""

    epoch: int
    train_loss: float
    top1: float
    top5: float
    seconds: float
    images_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProxyResult:
    """The outcome of `proxy_train`. A diverged run reports top1 = top5 = 0.0 so that it ranks last."""

    top1: float
    top5: float
    epochs: int
    seconds: float
    images_per_s: float
    status: Status = "ok"
    checkpoint: str | None = None
    history: tuple[EpochStats, ...] = field(default_factory=tuple)
    seed_top1: tuple[float, ...] = ()  # each seed's top-1 when this is the mean of several runs
    resumed_at: int = 0  # epochs its checkpoint already held when this call began (0: trained from scratch)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["history"] = [h.to_dict() for h in self.history]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProxyResult:
        history = tuple(EpochStats(**h) for h in data.get("history", ()))
        return cls(**{**data, "history": history})
