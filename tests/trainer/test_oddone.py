"""The known-answer task (trainer.oddone): every composite holds what its label says, and the tree is built-in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_builtin_data import write_idx_dir  # tests/trainer is on sys.path (pytest prepend mode)

from trainer import dataset_root, oddone
from trainer.fashion import CLASSES
from trainer.oddone import CELL, composites


def cells(canvas: np.ndarray, grid: int) -> list[np.ndarray]:
    return [canvas[y * CELL:(y + 1) * CELL, x * CELL:(x + 1) * CELL] for y in range(grid) for x in range(grid)]


@pytest.mark.parametrize("grid", [2, 3])
def test_each_composite_holds_two_photos_of_one_class_and_the_odd_one_of_its_label(grid: int) -> None:
    n = 200  # photo i is filled with the value i + 1, so each cell names the photo it holds (0: empty)
    images = np.stack([np.full((28, 28), i + 1, dtype=np.uint8) for i in range(n)])
    labels = np.arange(n) % len(CLASSES)
    canvases, odd = composites(images, labels, per_class=30, rng=np.random.default_rng(1), grid=grid)
    assert canvases.shape == (300, 28 * grid, 28 * grid) and np.bincount(odd).tolist() == [30] * 10
    empty_at, odd_at = [], []
    for canvas, label in zip(canvases, odd, strict=True):
        held = [int(c[0, 0]) - 1 for c in cells(canvas, grid)]
        assert all((c == c[0, 0]).all() for c in cells(canvas, grid))  # whole photos, never cut by a neighbour
        photos = [h for h in held if h >= 0]
        assert len(photos) == 3 and len(set(photos)) == 3  # three distinct photos, the other cells empty
        classes = sorted(labels[p] for p in photos)
        assert classes.count(label) == 1 and len(set(classes)) == 2  # the label's class once, another twice
        empty_at.extend(i for i, h in enumerate(held) if h < 0)
        odd_at.append(next(i for i, h in enumerate(held) if h >= 0 and labels[h] == label))
    # neither where the empty cells are nor where the odd photo is gives the label away (2x2: > 41 of 75 each,
    # at least as strict as the old > 40)
    cells_n = grid * grid
    assert all(np.bincount(empty_at, minlength=cells_n) > 0.55 * len(empty_at) / cells_n)
    assert all(np.bincount(odd_at, minlength=cells_n) > 0.55 * len(odd_at) / cells_n)


def test_a_grid_too_small_for_three_photos_is_refused() -> None:
    images, labels = np.zeros((20, 28, 28), dtype=np.uint8), np.arange(20) % len(CLASSES)
    with pytest.raises(ValueError, match="at least a 2x2 grid"):
        composites(images, labels, per_class=1, rng=np.random.default_rng(0), grid=1)


def test_fashion_odd_is_a_builtin_root_written_once_from_the_users_idx_files(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(oddone.PER_CLASS, "train", 4)
    monkeypatch.setitem(oddone.PER_CLASS, "val", 2)
    write_idx_dir(tmp_path / "idx", n_train=60, n_test=40)
    root = Path(dataset_root(f"fashion-odd:{tmp_path / 'idx'}", cache_dir=tmp_path / "cache"))
    assert root.name.startswith("fashion-odd-") and (root / oddone.MARKER).is_file()
    counts = {s: sorted(len(list((root / s / c).iterdir())) for c in CLASSES) for s in ("train", "val")}
    assert counts == {"train": [4] * 10, "val": [2] * 10}
    first = next((root / "train").rglob("*.png"))
    assert Image.open(first).size == (56, 56)
    stamp = (root / oddone.MARKER).stat().st_mtime_ns
    assert dataset_root(f"fashion-odd:{tmp_path / 'idx'}", cache_dir=tmp_path / "cache") == str(root)
    assert (root / oddone.MARKER).stat().st_mtime_ns == stamp  # reused, not rewritten
