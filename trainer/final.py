"""Final reporting on `val/`: the number a search must never see, measured once for a picked architecture.

The search scores architectures on a held-out split carved out of `train/`; `val/` is only read here,
after training, so the figure a user publishes was never used to choose what they publish. The val
images are decoded at the proxy's resolution with the cache's own decoder (same resize, same centre
square), labelled in the training subset's class order, and not cached: a final report runs once.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from trainer.augment import Normalizer
from trainer.cache import CachedSplit, decode_into, storage_errors, sweep_dead_builders, temp_folder
from trainer.checkpoint import load_checkpoint
from trainer.loop import build_proxy_model, evaluate, to_device
from trainer.schedule import Schedule
from trainer.subsets import DataError, SubsetSpec, class_files, split_dir, split_subset

VAL_SCRATCH = "attnas-val"  # the temporary folder's name in $TMPDIR (see `decode_val`)


@dataclass(frozen=True)
class ValResult:
    """Top-1/top-5 on val/ (fractions), how many images were scored, and which files could not be read."""

    top1: float
    top5: float
    images: int
    skipped: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def val_items(subset: SubsetSpec, classes: tuple[str, ...]) -> list[tuple[str, int]]:
    """(path, label) of every val/ image of `classes` (the trained label order, `split_subset(...).classes`)."""
    folder = split_dir(subset, "val")
    items = [
        (str(folder / wnid / name), label)
        for label, wnid in enumerate(classes)
        if (folder / wnid).is_dir()
        for name in class_files(folder / wnid)
    ]
    if not items:
        raise DataError(f"{folder} holds no images of the subset's {len(classes)} classes; "
                        "val/ must use the same class folder names as train/")
    return items


def score_on_val(
    spec: Any,
    subset: SubsetSpec,
    schedule: Schedule,
    checkpoint: str | Path,
    device: str | torch.device = "cpu",
    *,
    progress: bool = False,
) -> ValResult:
    """Load the trained weights from `checkpoint` (a proxy_train checkpoint) and score them on val/."""
    saved = load_checkpoint(Path(checkpoint))
    if saved is None:
        raise DataError(f"checkpoint {checkpoint} is missing or unreadable; train with a checkpoint folder first")
    classes = split_subset(subset).classes  # lists train/ once: on ImageNet that is a large directory walk
    items = val_items(subset, classes)
    device = torch.device(device)
    model = build_proxy_model(spec, len(classes), subset.resolution, schedule)
    model.load_state_dict(saved["model"])
    model = model.to(device)
    if schedule.channels_last:
        model = model.to(memory_format=torch.channels_last)
    images, errors = decode_val(items, subset.resolution, progress)
    labels = np.array([y for (_, y), err in zip(items, errors, strict=True) if err is None], dtype=np.int64)
    split = to_device(CachedSplit(images, labels), device)
    amp = device.type == "cuda" and schedule.amp
    top1, top5 = evaluate(model, split, Normalizer(device, schedule.channels_last), amp)
    skipped = tuple(p for (p, _), err in zip(items, errors, strict=True) if err)
    return ValResult(top1, top5, len(labels), skipped)


def decode_val(items: list[tuple[str, int]], resolution: int, progress: bool) -> tuple[np.ndarray, list[str | None]]:
    """The val images in RAM (decoded through a temporary memory map in $TMPDIR) and each file's error.

    The temporary folder is named for this process, so one left by a killed run is swept by the next.
    """
    scratch = Path(tempfile.gettempdir())
    sweep_dead_builders(scratch, VAL_SCRATCH)
    tmp = temp_folder(scratch / VAL_SCRATCH)
    try:
        with storage_errors(tmp, "$TMPDIR"):
            tmp.mkdir()
            with tqdm(total=len(items), desc="decoding val/", unit="img", disable=not progress) as bar:
                errors = decode_into(tmp / "val_images.npy", [p for p, _ in items], resolution, bar, None)
            return np.load(tmp / "val_images.npy"), errors
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
