"""Subsets, the held-out split, the uint8 cache and the digits tree, on small generated trees."""

from __future__ import annotations

import json
import multiprocessing as mp

import numpy as np
import pytest
import torch

import trainer.cache as cache_mod
from trainer import DataError, SubsetSpec, load_cache, split_subset, write_digits_tree
from trainer.subsets import named_class_list


def test_named_lists_are_shipped_and_well_formed():
    sizes = {name: len(named_class_list(name)) for name in ("imagenet100", "imagenette", "imagewoof")}
    assert sizes == {"imagenet100": 100, "imagenette": 10, "imagewoof": 10}
    for name in sizes:
        wnids = named_class_list(name)
        assert len(set(wnids)) == len(wnids)
        assert all(w.startswith("n") and len(w) == 9 and w[1:].isdigit() for w in wnids)
    assert named_class_list("imagenette")[0] == "n01440764"  # tench, as fast.ai ships it


def test_subset_spec_round_trips_with_a_stable_hash():
    spec = SubsetSpec(root="/data/imagenet", classes=("n01", "n02"), train_per_class=10, resolution=32)
    again = SubsetSpec.from_json(spec.to_json())
    assert again == spec and again.id == spec.id and hash(again) == hash(spec)
    assert SubsetSpec(root="/data/imagenet", classes=("n01", "n02"), train_per_class=10).id != spec.id
    with pytest.raises(DataError, match="random:100"):
        SubsetSpec(root="x", classes="random:")
    with pytest.raises(DataError, match="unknown field"):
        SubsetSpec.from_dict({"root": "x", "colour": "red"})


def test_split_is_deterministic_disjoint_and_never_reads_val(tmp_path, write_tree):
    root = write_tree(tmp_path / "tree", {"a": 12, "b": 12, "c": 12})
    (root / "val" / "a").mkdir(parents=True)
    subset = SubsetSpec(root=str(root), holdout_per_class=3, train_per_class=5, seed=1)
    split = split_subset(subset)
    assert split == split_subset(subset)
    train, held = {p for p, _ in split.train}, {p for p, _ in split.holdout}
    assert not train & held and all(p.startswith("train/") for p in train | held)
    assert len(train) == 15 and len(held) == 9
    assert [y for _, y in split.holdout] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    other = split_subset(SubsetSpec(root=str(root), holdout_per_class=3, train_per_class=5, seed=2))
    assert {p for p, _ in other.holdout} != held


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda r: SubsetSpec(root=str(r / "nowhere")), "does not exist"),
        (lambda r: SubsetSpec(root=str(r / "val-only")), "train. is missing; root must hold"),
        (lambda r: SubsetSpec(root=str(r / "tree"), classes=("a", "zebra")), "not found in train/"),
        (lambda r: SubsetSpec(root=str(r / "tree"), holdout_per_class=4), "fewer than 4 held-out"),
        (lambda r: SubsetSpec(root=str(r / "tree"), classes="imagenette"), "10 not found"),
    ],
)
def test_bad_input_gets_a_one_line_data_error(tmp_path, make, message, write_tree):
    write_tree(tmp_path / "tree", {"a": 4, "b": 6})
    (tmp_path / "val-only" / "val").mkdir(parents=True)
    with pytest.raises(DataError, match=message) as info:
        split_subset(make(tmp_path))
    assert "\n" not in str(info.value)


def test_corrupt_files_are_skipped_counted_and_listed(tmp_path, monkeypatch, write_tree, corrupt):
    """Unreadable files are skipped and listed (an empty class folder is refused: test_trainer_reliability)."""
    root = write_tree(tmp_path / "tree", {"a": 6, "b": 6, "c": 6})
    corrupt(root / "train" / "a" / "002.JPEG", "truncate")
    corrupt(root / "train" / "c" / "005.JPEG", "garbage")
    monkeypatch.setattr(cache_mod, "IN_PROCESS_BELOW", 0)  # exercise the process pool on a tiny tree
    monkeypatch.setattr(cache_mod, "CHUNK", 4)
    subset = SubsetSpec(root=str(root), holdout_per_class=2, resolution=16)
    cache = load_cache(subset, tmp_path / "cache", workers=2)
    manifest = cache.manifest
    skipped = {s["file"]: s["reason"] for s in manifest["skipped"]}
    assert set(skipped) == {"train/a/002.JPEG", "train/c/005.JPEG"} and all(skipped.values())
    assert manifest["classes"] == ["a", "b", "c"]
    total = manifest["counts"]["train"] + manifest["counts"]["holdout"]
    assert total == 16 and cache.train.images.shape[0] == manifest["counts"]["train"]
    assert manifest["counts"]["skipped"] == 2
    assert len(cache.train.labels) == cache.train.images.shape[0]
    assert cache.train.images.shape[1:] == (16, 16, 3) and cache.train.images.dtype == np.uint8
    assert cache.train.images.reshape(len(cache.train.labels), -1).std(axis=1).min() > 0  # no blank rows


def test_a_cache_that_does_not_match_is_rebuilt(tmp_path, write_tree):
    root = write_tree(tmp_path / "tree", {"a": 5, "b": 5})
    subset = SubsetSpec(root=str(root), holdout_per_class=1, resolution=16)
    first = load_cache(subset, tmp_path / "cache")
    assert load_cache(subset, tmp_path / "cache").manifest["build_id"] == first.manifest["build_id"]
    manifest_path = first.path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["classes"] = ["b", "a"]
    manifest_path.write_text(json.dumps(manifest))
    second = load_cache(subset, tmp_path / "cache")
    assert second.manifest["build_id"] != first.manifest["build_id"]
    np.save(second.path / "train_images.npy", np.zeros((1, 16, 16, 3), np.uint8))  # short array
    third = load_cache(subset, tmp_path / "cache")
    assert third.manifest["build_id"] != second.manifest["build_id"] and third.train.images.shape[0] == 8
    write_tree(root, {"c": 5}, seed=3)  # a new class folder changes what 'all' means
    assert load_cache(subset, tmp_path / "cache").manifest["classes"] == ["a", "b", "c"]


def test_two_processes_building_the_same_cache_build_it_once(tmp_path, write_tree):
    root = write_tree(tmp_path / "tree", {"a": 30, "b": 30}, size=(500, 375))
    subset = SubsetSpec(root=str(root), holdout_per_class=5, resolution=32)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=build_in_child, args=(subset.to_json(), str(tmp_path / "c"), queue)) for _ in "ab"]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results[0] == results[1] and results[0][1] == 50
    leftovers = [p.name for p in (tmp_path / "c").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert load_cache(subset, tmp_path / "c").manifest["build_id"] == results[0][0]


def test_digits_tree_is_an_imagenet_style_tree_written_once(tmp_path):
    root = write_digits_tree(tmp_path / "digits")
    train = sorted(p.name for p in (root / "train").iterdir())
    assert train == [str(d) for d in range(10)]
    n_train = sum(1 for _ in (root / "train").rglob("*.JPEG"))
    n_val = sum(1 for _ in (root / "val").rglob("*.JPEG"))
    assert n_train + n_val == 1797 and 150 < n_val < 200
    stamp = (root / "attnas-digits.json").stat().st_mtime_ns
    assert write_digits_tree(root) == root and (root / "attnas-digits.json").stat().st_mtime_ns == stamp
    cache = load_cache(SubsetSpec(root=str(root), holdout_per_class=10, resolution=32), tmp_path / "cache")
    image = torch.from_numpy(np.array(cache.holdout.images[0])).float()
    assert image.max() > 200 and image.min() < 50  # real strokes on a dark ground survived the JPEG


def build_in_child(subset_json: str, cache_dir: str, queue) -> None:
    """Process entry point: build (or reuse) a cache and report which build it got."""
    from trainer import SubsetSpec, load_cache

    cache = load_cache(SubsetSpec.from_json(subset_json), cache_dir)
    queue.put((cache.manifest["build_id"], cache.train.images.shape[0], int(cache.train.images.sum())))
