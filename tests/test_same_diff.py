"""benchmarks/same_diff.py: each canvas holds two photos of one class, the same photo exactly when labelled so."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from same_diff import CELL, canvases


def _photos(canvas: np.ndarray, photos: np.ndarray) -> list[int]:
    """Indices of the photos found whole on the canvas (each photo's pixels are unique and non-zero)."""
    found = []
    for y in range(canvas.shape[0] - CELL + 1):
        for x in range(canvas.shape[1] - CELL + 1):
            window = canvas[y:y + CELL, x:x + CELL]
            found += [int(i) for i in np.flatnonzero((photos == window).all(axis=(1, 2)))]
    return found


def test_same_canvases_repeat_one_photo_and_different_ones_show_two_of_one_class() -> None:
    rng = np.random.default_rng(0)
    photos = rng.integers(1, 256, size=(60, CELL, CELL), dtype=np.uint8)  # no zero pixel: placements are exact
    classes = np.arange(60) % 10
    pixels, same = canvases(photos, classes, per_label=6, rng=np.random.default_rng(1))
    assert pixels.shape == (12, 64, 64) and same.tolist() == [0] * 6 + [1] * 6
    for canvas, is_same in zip(pixels, same, strict=True):
        found = _photos(canvas, photos)
        assert len(found) == 2, "two whole photos, not overlapping"
        assert classes[found[0]] == classes[found[1]]
        assert (found[0] == found[1]) == bool(is_same)
        assert np.count_nonzero(canvas) == 2 * CELL * CELL
