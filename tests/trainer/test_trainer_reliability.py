"""No leaks on kill or full disk, and data checked before anything is created (issue 8, trainer side).

Real processes and real file systems: builders are killed with SIGKILL and SIGINT mid-build, caches and
checkpoints are written to a 2 MiB tmpfs (root only), and the pool's processes are found in /proc.
"""

from __future__ import annotations

import errno
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import trainer.cache as cache_mod
from trainer import CheckpointError, DataError, SubsetSpec, check_subset, load_cache
from trainer.checkpoint import load_checkpoint, save_checkpoint

# A builder process whose decoding never finishes within any test (the pool's workers inherit the patch by
# fork), so a test catches it mid-build however loaded the machine is; on Ctrl-C it says so and stays alive,
# to show the pool died with the build. Only a build that kills its pool can report before HUNG_S.
HUNG_S = 600
BUILDER = f"""
import sys, time
import trainer.cache as cache
from trainer import SubsetSpec, load_cache

def hung(path, resolution):
    time.sleep({HUNG_S})

cache.decode_image, cache.IN_PROCESS_BELOW, cache.CHUNK = hung, 0, 2
try:
    load_cache(SubsetSpec.from_json(sys.argv[1]), sys.argv[2], workers=2)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    time.sleep({HUNG_S})
"""


def live_children(pid: int) -> set[int]:
    """Pids of the running (not zombie) processes whose parent is `pid`, read from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def temp_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if ".tmp-" in p.name) if folder.is_dir() else []


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def line_within(proc: subprocess.Popen, timeout: float) -> str:
    """The next line `proc` prints, or "" if none comes within `timeout` s (a generous bound, not a guess)."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline().strip() if ready else ""


def start_builder(subset: SubsetSpec, cache_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", BUILDER, subset.to_json(), str(cache_dir)], stdout=subprocess.PIPE, text=True
    )


def mid_build(proc: subprocess.Popen, cache_dir: Path) -> set[int]:
    """Wait until the builder's pool (2 workers) is decoding into its temporary folder; return the workers."""
    return wait_for(
        lambda: temp_folders(cache_dir) and len(pool := live_children(proc.pid)) == 2 and pool,
        300,  # a bound for a broken build, not a guess: a loaded 2-core machine takes seconds
        "the builder's pool to start",
    )


@pytest.fixture
def slow_tree(tmp_path, write_tree) -> SubsetSpec:
    root = write_tree(tmp_path / "tree", {"a": 12, "b": 12})
    return SubsetSpec(root=str(root), holdout_per_class=2, resolution=16)


def test_a_builder_killed_mid_build_leaves_no_orphan_and_the_next_build_sweeps_its_folder(tmp_path, slow_tree):
    cache_dir = tmp_path / "cache"
    proc = start_builder(slow_tree, cache_dir)
    try:
        pool = mid_build(proc, cache_dir)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    wait_for(lambda: not any(running(pid) for pid in pool), 60, f"the pool {sorted(pool)} to die with its parent")
    (dead,) = temp_folders(cache_dir)
    assert f".tmp-{proc.pid}-" in dead.name
    # a live builder's folder (this process's pid) and another host's folder are never touched
    live = dead.with_name(dead.name.replace(f"-{proc.pid}-", f"-{os.getpid()}-"))
    remote = dead.with_name(f"{dead.name}-elsewhere")
    live.mkdir()
    remote.mkdir()
    cache = load_cache(slow_tree, cache_dir)
    assert cache.train.images.shape[0] == 20
    assert temp_folders(cache_dir) == sorted([live, remote])


def test_a_failed_build_kills_its_pool_and_removes_its_folder_at_once(tmp_path, slow_tree):
    cache_dir = tmp_path / "cache"
    proc = start_builder(slow_tree, cache_dir)
    try:
        pool = mid_build(proc, cache_dir)
        proc.send_signal(signal.SIGINT)  # KeyboardInterrupt inside the build; the builder itself lives on
        # every decode hangs for HUNG_S, so the line can only come from a build that cancelled its queued
        # chunks and killed its pool instead of waiting for them
        assert line_within(proc, 120) == "interrupted"
        assert proc.poll() is None and not any(running(pid) for pid in pool)
        assert temp_folders(cache_dir) == []
    finally:
        proc.kill()
        proc.wait(timeout=30)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


def test_a_cache_that_cannot_fit_is_refused_before_anything_is_allocated(tmp_path, write_tree, small_tmpfs):
    disk = small_tmpfs("2m")
    root = write_tree(tmp_path / "tree", {"a": 25, "b": 25})
    subset = SubsetSpec(root=str(root), holdout_per_class=2, resolution=128)  # 50 x 48 KiB = 2.5 MB
    with pytest.raises(DataError) as info:
        load_cache(subset, disk / "cache")
    message = one_line(info)
    assert str(cache_mod.cache_path(subset, disk / "cache")) in message
    needed, free = (int(s.replace(",", "")) for s in re.findall(r"([\d,]{5,}) bytes", message))
    assert needed > 50 * 128 * 128 * 3 and free <= 2 * 2**20 < needed and "free some space" in message
    assert temp_folders(disk / "cache") == []


def test_a_disk_that_fills_mid_build_is_one_line_with_no_process_or_folder_left(
    tmp_path, write_tree, corrupt, small_tmpfs, monkeypatch
):
    disk = small_tmpfs("2m")
    root = write_tree(tmp_path / "tree", {"a": 62, "b": 62})
    for name in ("001", "002", "003"):  # at most 2 are held out, so compacting train/ needs a second array
        corrupt(root / "train" / "a" / f"{name}.JPEG", "garbage")
    subset = SubsetSpec(root=str(root), holdout_per_class=2, resolution=64)  # 1.5 MB fits; 1.5 + 1.46 does not
    monkeypatch.setattr(cache_mod, "IN_PROCESS_BELOW", 0)  # decode in a real pool
    monkeypatch.setattr(cache_mod, "CHUNK", 16)
    before = live_children(os.getpid())
    with pytest.raises(DataError) as info:
        load_cache(subset, disk / "cache", workers=2)
    message = one_line(info)
    assert str(disk / "cache") in message and "no space left on the device" in message and "ATTNAS_CACHE" in message
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.ENOSPC
    assert live_children(os.getpid()) <= before
    assert temp_folders(disk / "cache") == []
    assert load_cache(subset, tmp_path / "roomy").manifest["counts"]["skipped"] == 3  # same data, enough disk


def test_a_read_only_cache_folder_is_one_line(tmp_path, write_tree, small_tmpfs):
    disk = small_tmpfs("1m", "ro")
    root = write_tree(tmp_path / "tree", {"a": 4, "b": 4})
    with pytest.raises(DataError) as info:
        load_cache(SubsetSpec(root=str(root), holdout_per_class=1, resolution=16), disk / "cache")
    message = one_line(info)
    assert str(disk / "cache") in message and "read-only file system" in message


@pytest.mark.parametrize(
    ("classes", "layout", "options", "problem"),
    [
        ({"a": 5}, None, {}, "one class cannot rank architectures"),
        ({"a": 5, "b": 5}, "no-train", {}, "train. is missing"),
        ({"a": 5, "b": 3}, None, {"holdout_per_class": 3}, "class 'b' has only 3 images"),
        ({"a": 9, "b": 6}, None, {"holdout_per_class": 2, "train_per_class": 5}, "at most 4"),
        ({"a": 5, "b": 5}, "first-unreadable", {}, "000.JPEG cannot be read"),
        ({"a": 5, "empty": 0, "b": 5}, None, {}, "train/empty holds no images; copy its images there or delete"),
        ({"a": 5, "e1": 0, "b": 5, "e2": 0}, None, {"classes": ("a", "b", "e1", "e2")},
         r"e1 holds no images \(2 empty: e1, e2\); copy its images there or leave it out of `classes`"),
        ({"a": 5, "b": 5}, "last-unreadable", {}, "004.JPEG cannot be read"),
    ],
)
def test_check_subset_names_the_problem_before_anything_is_created(
    tmp_path, write_tree, corrupt, classes, layout, options, problem
):
    root = write_tree(tmp_path / "tree", classes)
    if layout == "no-train":
        (root / "train").rename(root / "val")
    elif layout == "first-unreadable":
        corrupt(root / "train" / "b" / "000.JPEG", "truncate")
    elif layout == "last-unreadable":
        corrupt(root / "train" / "a" / "004.JPEG", "garbage")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(DataError, match=problem) as info:
        check_subset(SubsetSpec(root=str(root), **{"holdout_per_class": 1, **options}))
    one_line(info)
    assert sorted(tmp_path.rglob("*")) == before


def test_check_subset_summarises_a_good_tree_and_samples_the_ends_of_each_class(tmp_path, write_tree, corrupt):
    root = write_tree(tmp_path / "tree", {"a": 6, "b": 6, "c": 6})
    corrupt(root / "train" / "b" / "003.JPEG", "truncate")  # not sampled: left to the cache build to skip
    subset = SubsetSpec(root=str(root), holdout_per_class=2, train_per_class=3)
    summary = check_subset(subset)
    assert summary.classes == ("a", "b", "c")
    assert (summary.train_images, summary.holdout_images, summary.images_checked) == (9, 6, 6)
    assert summary.root == str(root)
    with pytest.raises(AttributeError):
        summary.train_images = 0  # type: ignore[misc]


def test_a_checkpoint_that_does_not_fit_keeps_the_previous_one(small_tmpfs):
    runs = small_tmpfs("2m") / "runs"
    path = runs / "abc" / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.arange(1000.0)})
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, {"epoch": 2, "w": torch.randn(700_000)})  # 2.8 MB on a 2 MiB disk
    message = one_line(info)
    assert str(path) in message and "no space left on the device" in message and "--runs" in message
    assert info.value.errno == errno.ENOSPC
    saved = load_checkpoint(path)
    assert saved is not None and saved["epoch"] == 1 and torch.equal(saved["w"], torch.arange(1000.0))
    assert os.listdir(path.parent) == ["checkpoint.pt"]  # no half-written temporary file left
