"""Write a same-different task from Fashion-MNIST: is the second photo a copy of the first?

Usage: .venv/bin/python benchmarks/same_diff.py OUT [--idx /dir/of/idx/files]

Why. On the odd-one-out task (trainer/oddone.py) the blocks' gain is learning speed: with more images or more
epochs the plain ResNet catches up (benchmarks/RESULTS.md, "More images", "A wider grid", "Longer training").
Same-different relations are the case the literature singles out as hard for feedforward CNNs and helped by
attention (Kim, Ricci & Serre, "Not-so-CLEVR", Interface Focus 2018; Vaishnav et al., Neural Computation
2022). Each 64x64 canvas holds two photos *of one class* at free, non-overlapping positions; label `same` when
the second is the first photo again, `different` when it is another photo of the same class. Pooled features
see one class either way, so the answer needs a comparison of two places by content before the pooling, at
offsets a convolution must learn one by one and NL's pairwise dot product covers at once. Whether that makes
a gain that lasts is what this tree is for (RESULTS.md, "Same or different").

Deterministic (seed 0); train/ from the official train split, val/ from the test split; `PER_LABEL` canvases
per label and split. Written once like the built-in trees (trainer.trees.write_once).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from trainer.fashion import CLASSES, FashionSource, find_source, read_split
from trainer.trees import write_once, write_pngs

MARKER = "attnas-same-diff.json"
SEED = 0
CANVAS = 64
CELL = 28
PER_LABEL = {"train": 3250, "val": 1000}
LABELS = ("different", "same")


def canvases(images: np.ndarray, labels: np.ndarray, per_label: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`per_label` canvases per label: (N x 64 x 64 uint8, labels N, 1 = same). Class uniform over ten."""
    by_class = [np.flatnonzero(labels == c) for c in range(len(CLASSES))]
    out = np.zeros((2 * per_label, CANVAS, CANVAS), dtype=np.uint8)
    same = np.repeat(np.arange(2), per_label)
    for i, is_same in enumerate(same):
        pool = by_class[rng.integers(len(CLASSES))]
        first, other = rng.choice(pool, size=2, replace=False)
        for photo, (y, x) in zip((first, first if is_same else other), _two_places(rng), strict=True):
            out[i, y:y + CELL, x:x + CELL] = images[photo]
    return out, same


def _two_places(rng: np.random.Generator) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two top-left corners, uniform over the canvas, whose 28 px squares do not overlap."""
    span = CANVAS - CELL + 1
    while True:
        a, b = rng.integers(span, size=2), rng.integers(span, size=2)
        if abs(int(a[0]) - int(b[0])) >= CELL or abs(int(a[1]) - int(b[1])) >= CELL:
            return (int(a[0]), int(a[1])), (int(b[0]), int(b[1]))


def write_tree(root: str | Path, found: FashionSource) -> Path:
    """`root/{train,val}/{different,same}/*.png`, once."""

    def build(tmp: Path) -> dict:
        counts = {}
        for index, split in enumerate(PER_LABEL):
            images, labels = read_split(found, split)
            rng = np.random.default_rng([SEED, index])
            counts[split] = write_pngs(tmp / split, *canvases(images, labels, PER_LABEL[split], rng), LABELS)
        return {"source": str(found.directory), "digest": found.digest, "seed": SEED, "classes": list(LABELS),
                "task": "two photos of one class on a 64 px canvas; same = the second is the first again", **counts}

    return write_once(root, MARKER, build)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write (train/ and val/ ImageFolder splits); reused once written")
    parser.add_argument("--idx", default=None, help="folder of Fashion-MNIST's four IDX files (default: found)")
    args = parser.parse_args(argv)
    print(write_tree(args.out, find_source(args.idx)))


if __name__ == "__main__":
    main()
