"""Built-in datasets are written once as ImageFolder trees: locked, atomic, marker last.

Many workers starting together on one cache must write a tree once, and a writer killed mid-way must leave
nothing a reader takes for whole: the splits are built in a temporary folder, renamed into place under a file
lock, and the marker (the tree's own description) is written last, so a tree without it is rewritten.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock
from PIL import Image

SPLITS = ("train", "val")


def write_once(root: str | Path, marker: str, build: Callable[[Path], dict[str, Any]]) -> Path:
    """`root` with `root/train` and `root/val` written by `build(tmp)` once; `build` returns the marker's JSON."""
    root = Path(root).expanduser()
    done = root / marker
    if done.is_file():  # the common case, every worker start: nothing to read or lock
        return root
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{Path(marker).stem}.lock")):
        if done.is_file():
            return root
        tmp = root / f".building-{uuid.uuid4().hex[:8]}"
        try:
            described = build(tmp)
            for split in SPLITS:
                shutil.rmtree(root / split, ignore_errors=True)
                (tmp / split).rename(root / split)
            partial = root / f".{marker}.tmp"
            partial.write_text(json.dumps(described, indent=1))
            partial.rename(done)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def write_pngs(folder: Path, images: np.ndarray, labels: np.ndarray, names: tuple[str, ...] | list[str]) -> int:
    """`folder/<names[label]>/<index>.png` for each image: the one layout every built-in tree's splits share."""
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(pixels).save(folder / names[label] / f"{i:05d}.png", compress_level=1)
    return len(labels)
