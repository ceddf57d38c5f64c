"""Trainer test fixtures: small ImageFolder trees (`write_tree`), files with known defects (`corrupt`) and
small real file systems that fill up (`small_tmpfs`, root only)."""

from __future__ import annotations

import os
import subprocess
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


@pytest.fixture
def small_tmpfs(tmp_path):
    """small_tmpfs(size="2m", options="") -> a freshly mounted tmpfs folder, unmounted after the test.

    A real full disk (ENOSPC) or read-only one (options="ro") for the failure tests; skipped unless root
    and the kernel lets this container mount.
    """
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill it needs root")
    mounted: list[Path] = []

    def mount(size: str = "2m", options: str = "") -> Path:
        folder = tmp_path / f"tmpfs{len(mounted)}"
        folder.mkdir()
        opts = f"size={size}" + (f",{options}" if options else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)
