"""The known-answer task: Fashion-MNIST "odd one out", written out as an ImageFolder PNG tree.

Why this task. On plain Fashion-MNIST attention placements differ by less than seed noise
(benchmarks/RESULTS.md), so a search over placements has nothing to find and no way to show it finds it. Here
each 56x56 image is a 2x2 grid holding three real Fashion-MNIST photos in three random cells: two of one
class, one of another; the label is the class of the odd one. The answer is relational: a network that only
pools features and reads them linearly sees twice the evidence for the *wrong* class, so it must compare
what is where across the image before its final pooling. The blocks searched over are the tools for that (SE
gates channels by a global summary, GC adds one to every position, NL compares positions pairwise), and
placement should matter: a block in a stage whose positions each see one cell can compare cells, one in an
early stage sees pieces of clothes. Which placements actually win is not assumed here; it is measured with
many seeds (benchmarks/known_answer.py, figures in benchmarks/RESULTS.md).

Deterministic: the composites are a function of the IDX files and `SEED`; the tree is named by both, so a
different copy of Fashion-MNIST never reuses a tree written from another. Built in a temporary folder and
renamed into place under a file lock, marker last (trainer.trees.write_once).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainer.fashion import CLASSES, FashionSource, read_split
from trainer.trees import write_once, write_pngs

ODD = "fashion-odd"  # the built-in name, as in a study's data.root
MARKER = "attnas-fashion-odd.json"
SEED = 0
CELL = 28
GRID = 2  # the shipped task's grid; benchmarks/odd_grid.py writes wider ones (3 photos in GRID x GRID cells)
#: Composites per class: train/ from the official train split, val/ from the test split (never read by a search).
PER_CLASS = {"train": 1200, "val": 300}
SPLITS = {"train": "train", "val": "val"}  # tree split -> IDX split


def write_odd_tree(root: str | Path, found: FashionSource, grid: int = GRID) -> Path:
    """Write `root/train/<class>/*.png` and `root/val/<class>/*.png` once (trainer.trees.write_once)."""

    def build(tmp: Path) -> dict:
        counts = {split: _write_split(tmp / split, found, split, grid) for split in SPLITS}
        return {"source": str(found.directory), "digest": found.digest, "seed": SEED, "grid": grid,
                "task": f"label = class of the one item of three whose class is unique; {grid}x{grid} grid of "
                        f"28 px cells, {grid * grid - 3} empty", "classes": list(CLASSES), **counts}

    return write_once(root, MARKER, build)


def composites(images: np.ndarray, labels: np.ndarray, per_class: int, rng: np.random.Generator,
               grid: int = GRID) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` odd-one-out canvases per class: (canvases N x 28·grid x 28·grid uint8, labels N).

    The pair's class is uniform over the other nine; the three photos are distinct draws; the empty cells and
    the odd photo's cell are uniform, so neither position nor count of items gives the label away. A wider
    grid multiplies the layouts (12 on 2x2, 252 on 3x3): a convolution learns each cell-to-cell offset apart,
    a pairwise block (NL) compares by content wherever the photos sit.
    """
    if grid < 2:
        raise ValueError(f"grid {grid!r}: three photos need at least a 2x2 grid")
    by_class = [np.flatnonzero(labels == c) for c in range(len(CLASSES))]
    size = grid * CELL
    canvases = np.zeros((per_class * len(CLASSES), size, size), dtype=np.uint8)
    odd_labels = np.repeat(np.arange(len(CLASSES)), per_class)
    for i, odd in enumerate(odd_labels):
        pair = (odd + 1 + rng.integers(len(CLASSES) - 1)) % len(CLASSES)
        photos = [rng.choice(by_class[odd]), *rng.choice(by_class[pair], size=2, replace=False)]
        cells = rng.permutation(grid * grid)[:3]
        for photo, cell in zip(photos, cells, strict=True):
            y, x = divmod(int(cell), grid)
            canvases[i, y * CELL:(y + 1) * CELL, x * CELL:(x + 1) * CELL] = images[photo]
    return canvases, odd_labels


def _write_split(folder: Path, found: FashionSource, split: str, grid: int) -> int:
    images, labels = read_split(found, SPLITS[split])
    rng = np.random.default_rng([SEED, list(SPLITS).index(split)])
    return write_pngs(folder, *composites(images, labels, PER_CLASS[split], rng, grid), CLASSES)
