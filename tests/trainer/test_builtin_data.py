"""Built-in datasets: the Fashion-MNIST tree (from Debian's package or a user's IDX files) and `dataset_root`."""

from __future__ import annotations

import gzip
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer import DataError, SubsetSpec, dataset_root, split_subset, write_fashion_tree
from trainer.fashion import CLASSES, DEBIAN_DIR, ENV, FILES, MARKER, read_idx

DEBIAN = all((DEBIAN_DIR / f"{stem}.gz").is_file() for stem in FILES.values())
needs_debian = pytest.mark.skipif(not DEBIAN, reason=f"Debian's dataset-fashion-mnist is not installed ({DEBIAN_DIR} "
                                  "lacks its IDX files); run tests/install.sh as root or apt-get install it")


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: 0, 0, dtype 0x08, ndim, big-endian dims, then the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_dir(folder: Path, n_train: int = 40, n_test: int = 20, gz: bool = False, seed: int = 0) -> dict:
    """Four valid IDX files of random 28x28 images; every class appears in both splits."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for split, n in (("train", n_train), ("val", n_test)):
        data[split, "images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        data[split, "labels"] = (np.arange(n) % len(CLASSES)).astype(np.uint8)
    for key, stem in FILES.items():
        raw = idx_bytes(data[key])
        (folder / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(raw) if gz else raw)
    return data


def listed(root: Path, split: str) -> dict[str, list[str]]:
    return {c.name: sorted(p.name for p in c.iterdir()) for c in sorted((root / split).iterdir())}


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)


def test_user_idx_dir_gives_the_exact_images_train_and_test_apart(tmp_path, no_env):
    data = write_idx_dir(tmp_path / "idx", gz=True)
    root = write_fashion_tree(tmp_path / "tree", tmp_path / "idx")
    assert sorted(listed(root, "train")) == sorted(CLASSES)
    assert sum(map(len, listed(root, "train").values())) == 40 and sum(map(len, listed(root, "val").values())) == 20
    # pixel-exact, lossless, and filed under the official class name of its label
    for split in ("train", "val"):
        for i in (0, 7, 13):
            label = CLASSES[data[split, "labels"][i]]
            pixels = np.asarray(Image.open(root / split / label / f"{i:05d}.png"))
            np.testing.assert_array_equal(pixels, data[split, "images"][i])
    # the test split lands only in val/: no val image's pixels appear under train/
    train_pixels = {np.asarray(Image.open(p)).tobytes() for p in (root / "train").rglob("*.png")}
    assert not any(data["val", "images"][i].tobytes() in train_pixels for i in range(20))
    # and a search's subset (held-out carved out of train/) never names a val/ file
    split = split_subset(SubsetSpec(root=str(root), holdout_per_class=2, resolution=28))
    paths = [p for p, _ in split.train + split.holdout]
    assert len(paths) == 40 and all(Path(p).parts[0] == "train" for p in paths)


def test_uncompressed_idx_files_and_the_env_var_work_too(tmp_path, monkeypatch):
    write_idx_dir(tmp_path / "idx", gz=False)
    monkeypatch.setenv(ENV, str(tmp_path / "idx"))
    root = Path(dataset_root("fashion-mnist", cache_dir=tmp_path / "cache"))
    assert root.parent == tmp_path / "cache" and (root / MARKER).is_file()
    assert sum(map(len, listed(root, "val").values())) == 20
    # the explicit root form names the same files, so it resolves to the same tree
    monkeypatch.delenv(ENV)
    assert dataset_root(f"fashion-mnist:{tmp_path / 'idx'}", cache_dir=tmp_path / "cache") == str(root)


def test_a_different_copy_never_reuses_another_copys_tree(tmp_path, no_env):
    write_idx_dir(tmp_path / "a", seed=1)
    write_idx_dir(tmp_path / "b", seed=2)
    a = dataset_root(f"fashion-mnist:{tmp_path / 'a'}", cache_dir=tmp_path / "cache")
    b = dataset_root(f"fashion-mnist:{tmp_path / 'b'}", cache_dir=tmp_path / "cache")
    assert a != b


def _write(args: tuple[str, str]) -> float:
    root, source = args
    path = write_fashion_tree(root, source)
    return (path / MARKER).stat().st_mtime_ns


def test_concurrent_writers_build_the_tree_once(tmp_path, no_env):
    write_idx_dir(tmp_path / "idx", n_train=400, n_test=100)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        stamps = pool.map(_write, [(str(tmp_path / "tree"), str(tmp_path / "idx"))] * 3)
    assert len(set(stamps)) == 1  # one marker, written once; the others waited on the lock and reused it
    root = tmp_path / "tree"
    assert sum(map(len, listed(root, "train").values())) == 400
    assert not [p for p in root.iterdir() if p.name.startswith(".building-")]


def test_a_half_written_tree_is_rewritten(tmp_path, no_env):
    write_idx_dir(tmp_path / "idx")
    (tmp_path / "tree" / "train" / "bag").mkdir(parents=True)
    (tmp_path / "tree" / "train" / "bag" / "junk.png").write_bytes(b"torn")  # no marker: an interrupted write
    root = write_fashion_tree(tmp_path / "tree", tmp_path / "idx")
    assert not (root / "train" / "bag" / "junk.png").exists() and (root / MARKER).is_file()


def test_neither_source_is_one_line_naming_both_options(tmp_path, monkeypatch):
    monkeypatch.setattr("trainer.fashion.DEBIAN_DIR", tmp_path / "no-debian-here")
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(DataError) as err:
        dataset_root("fashion-mnist", cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert "\n" not in message
    assert "apt-get install dataset-fashion-mnist" in message and ENV in message and "IDX" in message
    assert not (tmp_path / "cache").exists()  # nothing written


def test_a_directory_missing_a_file_or_holding_garbage_is_named(tmp_path, no_env):
    write_idx_dir(tmp_path / "idx")
    (tmp_path / "idx" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="lacks t10k-labels-idx1-ubyte"):
        write_fashion_tree(tmp_path / "tree", tmp_path / "idx")
    (tmp_path / "idx" / "t10k-labels-idx1-ubyte").write_bytes(b"not idx at all")
    with pytest.raises(DataError, match="not a uint8 IDX file"):
        write_fashion_tree(tmp_path / "tree", tmp_path / "idx")
    assert not (tmp_path / "tree" / MARKER).exists()


def test_dataset_root_passes_paths_through_and_names_the_builtins_for_a_missing_one(tmp_path):
    assert dataset_root(str(tmp_path)) == str(tmp_path)
    with pytest.raises(DataError, match="'digits', 'fashion-mnist'"):
        dataset_root(str(tmp_path / "missing"))


@needs_debian
def test_debian_package_gives_60000_train_and_10000_test_images(tmp_path, no_env):
    train = read_idx(DEBIAN_DIR / "train-labels-idx1-ubyte.gz")
    test_images = read_idx(DEBIAN_DIR / "t10k-images-idx3-ubyte.gz")
    assert train.shape == (60000,) and test_images.shape == (10000, 28, 28)
    assert np.bincount(train).tolist() == [6000] * 10
    # a user directory holding a slice of the real files writes the same pixels as the real images
    real = {key: read_idx(DEBIAN_DIR / f"{stem}.gz") for key, stem in FILES.items()}
    (tmp_path / "idx").mkdir()
    for key, stem in FILES.items():
        (tmp_path / "idx" / stem).write_bytes(idx_bytes(real[key][:50]))
    root = write_fashion_tree(tmp_path / "tree", tmp_path / "idx")
    first = CLASSES[real["train", "labels"][0]]
    np.testing.assert_array_equal(np.asarray(Image.open(root / "train" / first / "00000.png")),
                                  real["train", "images"][0])


@pytest.mark.slow
@needs_debian
def test_debian_tree_is_written_whole(tmp_path, no_env):
    root = Path(dataset_root("fashion-mnist", cache_dir=tmp_path))
    counts = {split: {c: len(v) for c, v in listed(root, split).items()} for split in ("train", "val")}
    assert counts == {"train": dict.fromkeys(sorted(CLASSES), 6000), "val": dict.fromkeys(sorted(CLASSES), 1000)}
