"""Trainer test fixtures: small ImageFolder trees (`write_tree`) and files with known defects (`corrupt`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _write_tree(root: Path, classes: dict[str, int], size: tuple[int, int] = (48, 40), seed: int = 0) -> Path:
    """`root/train/<class>/<i>.JPEG` with `classes[name]` noisy images each (0 makes an empty folder)."""
    rng = np.random.default_rng(seed)
    for name, count in classes.items():
        folder = root / "train" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:03d}.JPEG", quality=90)
    return root


def _corrupt(path: Path, how: str) -> None:
    """Truncate a JPEG to a third of its bytes, or overwrite it with bytes that are not an image."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] if how == "truncate" else b"not a jpeg at all" * 10)


@pytest.fixture
def write_tree():
    """_write_tree(root, {class: n_images}, size=(w, h), seed=0) -> root."""
    return _write_tree


@pytest.fixture
def corrupt():
    """_corrupt(path, "truncate" | "garbage")."""
    return _corrupt
