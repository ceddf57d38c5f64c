"""The second built-in real dataset: Zalando's Fashion-MNIST written out as an ImageFolder PNG tree.

Fashion-MNIST (Xiao et al., 2017) is 70,000 real 28x28 grey photos of clothes in 10 classes, a much harder
task than digits, so differences between attention placements can show. It ships as four IDX files; attnas
reads them from a directory the user names, else from Debian's `dataset-fashion-mnist` package, and writes
them once as lossless PNGs (28x28 grey, ~300 bytes each) so that studies run the same folder listing, split,
decoding and cache code a real ImageNet copy goes through. The official training split becomes `train/`
(which searches split into train and held-out images) and the official test split becomes `val/`, which a
search never reads.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.subsets import DataError
from trainer.trees import write_once, write_pngs

FASHION = "fashion-mnist"  # the built-in name, as in a study's data.root
MARKER = "attnas-fashion-mnist.json"
ENV = "ATTNAS_FASHION_MNIST"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
#: The official class names (label order), as folder names: lower case, "/" and " " replaced.
CLASSES = ("t-shirt_top", "trouser", "pullover", "dress", "coat",
           "sandal", "shirt", "sneaker", "bag", "ankle_boot")
#: The four standard file stems; each may be stored gzipped (`.gz`) or not.
FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("val", "images"): "t10k-images-idx3-ubyte",
    ("val", "labels"): "t10k-labels-idx1-ubyte",
}
HINT = (f"install Debian's package (apt-get install dataset-fashion-mnist, files in {DEBIAN_DIR}) or point "
        f"${ENV} (or root = \"fashion-mnist:/dir\") at a directory holding the four IDX files "
        f"{', '.join(FILES.values())} (.gz or not)")


@dataclass(frozen=True)
class FashionSource:
    """Where the four IDX files were found, and a digest of their bytes that names the written tree."""

    directory: Path
    files: dict[tuple[str, str], Path]
    digest: str


def find_source(source: str | Path | None = None) -> FashionSource:
    """The IDX files: `source` if given, else `$ATTNAS_FASHION_MNIST`, else Debian's package directory."""
    if source is not None or os.environ.get(ENV):
        directory = Path(source if source is not None else os.environ[ENV]).expanduser()
        origin = "the given directory" if source is not None else f"${ENV}"
    else:
        directory, origin = DEBIAN_DIR, None
    files = {key: _idx_file(directory, stem) for key, stem in FILES.items()}
    missing = [FILES[key] for key, path in files.items() if path is None]
    if missing:
        where = f"{origin} {str(directory)!r} lacks {', '.join(missing)}" if origin else "no Fashion-MNIST found"
        raise DataError(f"fashion-mnist: {where}; {HINT}")
    found = {key: path for key, path in files.items() if path is not None}
    digest = hashlib.sha256()
    for key in FILES:
        digest.update(found[key].read_bytes())
    return FashionSource(directory, found, digest.hexdigest()[:12])


def _idx_file(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (the MNIST format: 2 zero bytes, dtype 0x08 = uint8, ndim, big-endian dims, data)."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] != 0x08 or raw[3] not in (1, 3):
        raise DataError(f"fashion-mnist: {str(path)!r} is not a uint8 IDX file; {HINT}")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims)):
        raise DataError(f"fashion-mnist: {str(path)!r} is truncated ({len(body)} bytes for shape {dims}); {HINT}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def write_fashion_tree(root: str | Path, source: str | Path | None = None) -> Path:
    """Write `root/train/<class>/*.png` (official train split) and `root/val/<class>/*.png` (test split) once
    (trainer.trees.write_once: many workers starting together write it once, a half-written one is rewritten)."""

    def build(tmp: Path) -> dict:
        found = find_source(source)
        counts = {split: _write_split(tmp / split, found, split) for split in ("train", "val")}
        return {"source": str(found.directory), "digest": found.digest, "classes": list(CLASSES), **counts}

    return write_once(root, MARKER, build)


def read_split(found: FashionSource, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One official split's images (N x 28 x 28) and labels (N), checked to belong together."""
    images, labels = read_idx(found.files[split, "images"]), read_idx(found.files[split, "labels"])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or labels.max(initial=0) >= len(CLASSES):
        raise DataError(f"fashion-mnist: the {split} images and labels do not match (shapes {images.shape}, "
                        f"{labels.shape}); {HINT}")
    return images, labels


def _write_split(folder: Path, found: FashionSource, split: str) -> int:
    return write_pngs(folder, *read_split(found, split), CLASSES)
