"""The built-in real dataset: scikit-learn's `digits` written out as an ImageNet-style JPEG tree.

It is written as JPEG files, not handed over as arrays, so that tests and the demo study run the same
folder listing, split, decoding and cache code a real ImageNet copy goes through.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from trainer.trees import write_once

MARKER = "attnas-digits.json"
SIZE = 32  # the 8x8 digits upscaled, so a 32 px proxy trains on them without a further resize
VAL_EVERY = 10  # every 10th image goes to val/ (~10%), the rest to train/


def write_digits_tree(root: str | Path) -> Path:
    """Write `root/train/<digit>/*.JPEG` and `root/val/<digit>/*.JPEG` once; later calls reuse it
    (trainer.trees.write_once: the marker is written last, so a tree without it is rewritten)."""
    return write_once(root, MARKER, lambda tmp: {"source": "sklearn.datasets.load_digits", **_write_images(tmp)})


def _write_images(folder: Path) -> dict[str, int]:
    from sklearn.datasets import load_digits  # deferred: scikit-learn is slow to import

    digits = load_digits()
    counts = {"train": 0, "val": 0}
    for i, (pixels, target) in enumerate(zip(digits.images, digits.target, strict=True)):
        split = "val" if i % VAL_EVERY == VAL_EVERY - 1 else "train"
        gray = Image.fromarray(np.clip(pixels * (255 / 16), 0, 255).astype(np.uint8))
        image = gray.resize((SIZE, SIZE), Image.Resampling.BILINEAR).convert("RGB")
        out = folder / split / str(target)
        out.mkdir(parents=True, exist_ok=True)
        image.save(out / f"{i:04d}.JPEG", quality=95)
        counts[split] += 1
    return counts
