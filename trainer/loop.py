"""`proxy_train`: train one architecture on a cached subset and score it on the held-out split.

The data never goes through a DataLoader: the cached uint8 array is already the whole epoch, so a batch
is one index-select, and cropping, flipping and normalising are one batched resample on the device.
That keeps the data path a few percent of a step even for the tiny proxies a search trains.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from trainer.augment import Normalizer, crop_params
from trainer.cache import CachedSplit, load_cache
from trainer.checkpoint import FILE, load_checkpoint, run_dir, save_checkpoint
from trainer.schedule import EpochStats, ProxyResult, Schedule
from trainer.subsets import SubsetSpec
from trainer.trunk import Start, load_trunk, read_weights

DEVICE_SHARE = 0.5  # the cache moves onto the GPU when it takes at most this share of free memory
EVAL_BATCH = 512


class Cancelled(Exception):
    """The caller's `stop()` asked for the run to end (its trial was taken over): nothing was written after."""


def proxy_train(
    spec: Any,
    subset: SubsetSpec,
    schedule: Schedule,
    device: str | torch.device = "cpu",
    *,
    on_epoch: Callable[[EpochStats], bool | None] | None = None,
    checkpoint_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    start: Start | None = None,
    stop: Callable[[], bool] | None = None,
) -> ProxyResult:
    """Train `spec` (an ArchSpec) on `subset` with `schedule`; top-1/top-5 are on the held-out split.

    With `checkpoint_dir`, every epoch is checkpointed and a rerun resumes where the last one stopped
    (a finished run is returned as is). `on_epoch` runs after each epoch's checkpoint is written, so an
    exception it raises (an Optuna prune, a preemption) loses no work; a resumed run calls it again for
    the epoch its checkpoint ends at (at least once per epoch, never skipped by a kill in between).
    `on_epoch` returning False stops training there (early stopping): status 'stopped', top-1/top-5 of
    that epoch, and the checkpoint says so, so a rerun returns the stopped result instead of training on.
    A NaN/inf loss ends the run with status 'diverged' instead of raising.
    With `start` (trainer.trunk), the network starts from a trunk's backbone weights instead of its init
    (attention keeps its own); the trunk's key is part of the checkpoint's key.
    `stop` is asked before every step and every checkpoint write; True raises `Cancelled` at once, writing
    nothing more (a study worker whose trial another worker retried must not write into the retry's folder).
    """
    started = time.perf_counter()
    device = torch.device(device)
    cache = load_cache(subset, cache_dir, progress=progress)
    model = build_proxy_model(spec, cache.num_classes, subset.resolution, schedule)
    if start is not None:
        load_trunk(model, read_weights(start.path), start.path)
    model = model.to(device)
    cuda = device.type == "cuda"
    if schedule.channels_last:  # faster on CPU too (oneDNN): ~1.3x for a thin ResNet-18 at 32 px
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, schedule)
    gens = {"shuffle": torch.Generator().manual_seed(schedule.seed), "augment": torch.Generator()}
    gens["augment"].manual_seed(schedule.seed + 1)
    path = None
    state: dict[str, Any] = {"epoch": 0, "history": [], "status": "ok", "seconds": 0.0}
    if checkpoint_dir is not None:
        key = {"spec": spec.to_dict(), "subset": subset.to_dict(), "schedule": schedule.to_dict(),
               **({"start": start.key} if start is not None else {})}
        path = run_dir(checkpoint_dir, key) / FILE
        saved = load_checkpoint(path)
        if saved is not None:
            state = _restore(saved, model, optimizer, gens)
    history = [EpochStats(**h) for h in state["history"]]
    train, holdout = to_device(cache.train, device), to_device(cache.holdout, device)
    step_fn = _train_step(model, optimizer, schedule, cuda)
    normalize = Normalizer(device, schedule.channels_last)
    status, epoch = state["status"], state["epoch"]
    resumed_at = epoch
    previous_seconds = state["seconds"]
    if on_epoch is not None and status == "ok" and history and epoch < schedule.epochs \
            and on_epoch(history[-1]) is False:
        # At least once per epoch: a kill between the checkpoint and the callback (say, a rung decision not
        # yet recorded) would otherwise skip the callback for that epoch on resume.
        status = "stopped"
        _save(path, _state(model, optimizer, gens, epoch, history, status, state["seconds"]), stop)
    while status == "ok" and epoch < schedule.epochs:
        t0 = time.perf_counter()
        loss, images = _train_epoch(step_fn, train, normalize, schedule, epoch, gens, progress, stop)
        train_seconds = time.perf_counter() - t0
        epoch += 1
        if not math.isfinite(loss):
            status = "diverged"
        else:
            top1, top5 = evaluate(model, holdout, normalize, cuda and schedule.amp)
            stats = EpochStats(epoch, loss, top1, top5, time.perf_counter() - t0, images / train_seconds)
            history.append(stats)
        seconds = previous_seconds + time.perf_counter() - started
        if path is not None:
            _save(path, _state(model, optimizer, gens, epoch, history, status, seconds), stop)
        if on_epoch is not None and status == "ok" and on_epoch(stats) is False:
            status = "stopped"
            if path is not None:
                _save(path, _state(model, optimizer, gens, epoch, history, status, seconds), stop)
    result = _result(history, epoch, status, previous_seconds + time.perf_counter() - started, path)
    return replace(result, resumed_at=resumed_at)


def build_proxy_model(spec: Any, num_classes: int, resolution: int, schedule: Schedule) -> nn.Module:
    """The proxy network, initialised from the schedule's seed without touching the caller's RNG."""
    import search_space  # deferred: trainer must import without the model zoo for cache-only work

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(schedule.seed)
        return search_space.build_model(spec, num_classes, width_mult=schedule.width_mult, input_size=resolution)


def build_optimizer(model: nn.Module, schedule: Schedule) -> torch.optim.Optimizer:
    """Nesterov SGD; weight decay on weights only (norm scales and biases are ndim <= 1)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": schedule.weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
    return torch.optim.SGD(groups, lr=schedule.lr, momentum=schedule.momentum, nesterov=True)


def to_device(split: CachedSplit, device: torch.device) -> CachedSplit:
    """The split as tensors: on a GPU when it fits comfortably, else in (pinned) host memory."""
    images = torch.from_numpy(np.array(split.images))  # read the memory map once, into RAM
    labels = torch.from_numpy(np.asarray(split.labels))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        images = images.to(device) if images.numel() <= DEVICE_SHARE * free else images.pin_memory()
        labels = labels.to(device)
    return CachedSplit(images, labels)  # type: ignore[arg-type]


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Schedule, cuda: bool):
    """One optimisation step as a closure; `torch.compile` (optional) wraps the forward pass only."""
    forward = torch.compile(model) if schedule.compile else model
    autocast = cuda and schedule.amp

    def step(x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = F.cross_entropy(forward(x), y, label_smoothing=schedule.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def _train_epoch(
    step_fn,
    train: CachedSplit,
    normalize: Normalizer,
    schedule: Schedule,
    epoch: int,
    gens: dict[str, torch.Generator],
    progress: bool,
    stop: Callable[[], bool] | None = None,
) -> tuple[float, int]:
    """Mean loss and images seen in one epoch (remainder batch dropped: a new one every epoch)."""
    images, labels = train.images, train.labels
    n = images.shape[0]
    batch = min(schedule.batch_size, n)
    steps = n // batch
    order = torch.randperm(n, generator=gens["shuffle"])
    device = labels.device
    total = torch.zeros((), device=device)
    nearest = schedule.augment == "pad_crop"
    bar = tqdm(
        range(steps), desc=f"epoch {epoch + 1}/{schedule.epochs}", file=sys.stderr, disable=not progress, leave=False
    )
    for i in bar:
        if stop is not None and stop():
            raise Cancelled(f"stopped training in epoch {epoch + 1} at step {i}")
        idx = order[i * batch : (i + 1) * batch]
        x = images[idx.to(images.device)].to(device, non_blocking=True)
        y = labels[idx.to(device)]
        theta = crop_params(
            batch, x.shape[1], gens["augment"], kind=schedule.augment, min_scale=schedule.min_scale, flip=schedule.flip
        )
        loss = step_fn(normalize(x, theta, nearest), y, schedule.lr_at(epoch * steps + i, steps))
        total += loss
        if progress and i % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return float(total / steps), steps * batch


@torch.no_grad()
def evaluate(model: nn.Module, split: CachedSplit, normalize: Normalizer, amp: bool) -> tuple[float, float]:
    """Top-1 and top-5 accuracy (fractions) of `model` on the un-augmented images of `split`."""
    model.eval()
    device = split.labels.device
    correct1 = correct5 = torch.zeros((), device=device)
    n = split.images.shape[0]
    for i in range(0, n, EVAL_BATCH):
        x = normalize(split.images[i : i + EVAL_BATCH].to(device, non_blocking=True))
        y = split.labels[i : i + EVAL_BATCH]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == y[:, None]
        correct1 = correct1 + hits[:, 0].sum()
        correct5 = correct5 + hits.any(dim=1).sum()
    model.train()
    return float(correct1) / max(n, 1), float(correct5) / max(n, 1)


def _save(path: Path | None, state: dict[str, Any], stop: Callable[[], bool] | None) -> None:
    """Write the checkpoint, unless `stop` says the run is no longer this caller's (then `Cancelled`)."""
    if stop is not None and stop():
        raise Cancelled(f"stopped training in epoch {state['epoch']}, before its checkpoint")
    save_checkpoint(path, state)


def _state(model, optimizer, gens, epoch, history, status, seconds) -> dict[str, Any]:
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generators": {k: g.get_state() for k, g in gens.items()},
        "epoch": epoch,
        "history": [h.to_dict() for h in history],
        "status": status,
        "seconds": seconds,
    }


def _restore(saved: dict[str, Any], model, optimizer, gens) -> dict[str, Any]:
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    for k, g in gens.items():
        g.set_state(saved["generators"][k])
    return saved


def _result(history: list[EpochStats], epochs: int, status: str, seconds: float, path: Path | None):
    last = history[-1] if history and status != "diverged" else None
    # harmonic mean: every epoch trains the same number of images, so this is images / training seconds
    rate = len(history) / sum(1 / h.images_per_s for h in history) if history else 0.0
    return ProxyResult(
        top1=last.top1 if last else 0.0,
        top5=last.top5 if last else 0.0,
        epochs=epochs,
        seconds=seconds,
        images_per_s=rate,
        status=status,  # type: ignore[arg-type]
        checkpoint=str(path) if path else None,
        history=tuple(history),
    )
