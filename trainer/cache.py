"""The preprocessed cache: each subset decoded and resized once into uint8 arrays plus a manifest.

Images are stored as exactly `resolution` x `resolution` (shorter side resized, centre square kept). A
larger store with a margin for random crops would cost (1.14)^2 = 1.3x the disk and device memory for
nothing: the loop draws random-resized (or padded) crops on the device by resampling, so the stored
square is both the training source and the evaluation view. It also keeps the on-disk size an exact
N x R x R x 3 bytes.

Decoding dominates building from full-size JPEGs, so PIL's `draft` decodes at 1/2, 1/4 or 1/8 scale
straight from the DCT (never below the target size) and a process pool spreads the files over cores.

A build never leaks: free space is checked before anything is allocated, the arrays are allocated up front
(`posix_fallocate`), so a full disk is an ENOSPC error instead of a SIGBUS on a memory-mapped page, every
write error becomes a one-line `DataError` naming the path, the pool's processes die with their parent
(`PR_SET_PDEATHSIG`) and are killed when a build fails, and the temporary folder of a builder that was
killed is swept by the next build.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock
from PIL import Image
from tqdm import tqdm

from trainer.subsets import DataError, Split, SubsetSpec, default_cache_dir, split_subset, write_failure

FORMAT = 1  # bump when the layout or the resize changes, so old caches are rebuilt, never trusted
CHUNK = 256  # files per pool task: large enough to amortise pickling, small enough for a smooth bar
IN_PROCESS_BELOW = 512  # a pool costs more than it saves on fewer files than this
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>: the signal a process gets when its parent exits
SETTING = "$ATTNAS_CACHE (or cache_dir=)"  # what a user changes to put the cache elsewhere
#: A builder's temporary folder: `.<cache name>.tmp-<pid>-<8 hex>.<host>`; the pid and host say whose it is.
TEMP = re.compile(r"\.(?P<name>.+)\.tmp-(?P<pid>\d+)-(?P<id>[0-9a-f]{8})(?:\.(?P<host>.+))?")


@dataclass(frozen=True)
class CachedSplit:
    images: np.ndarray  # (N, R, R, 3) uint8, memory-mapped
    labels: np.ndarray  # (N,) int64


@dataclass(frozen=True)
class Cache:
    """A loaded cache: the training and held-out arrays plus the manifest they were built from."""

    path: Path
    train: CachedSplit
    holdout: CachedSplit
    manifest: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return len(self.manifest["classes"])


def decode_image(path: str, resolution: int) -> np.ndarray:
    """One image as an (R, R, 3) uint8 array: shorter side to R (antialiased), centre square."""
    with Image.open(path) as im:
        im.draft("RGB", (resolution, resolution))
        im = im.convert("RGB")
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        box = (left, top, left + side, top + side)
        im = im.resize((resolution, resolution), Image.Resampling.BILINEAR, box=box)
        return np.asarray(im, dtype=np.uint8)


def _decode_chunk(paths: list[str], resolution: int) -> tuple[np.ndarray, list[str | None]]:
    """Decode a chunk; a file that fails yields a zero image and its reason instead of an exception."""
    out = np.zeros((len(paths), resolution, resolution, 3), dtype=np.uint8)
    errors: list[str | None] = []
    for i, path in enumerate(paths):
        try:
            out[i] = decode_image(path, resolution)
            errors.append(None)
        except Exception as exc:  # any unreadable file is skipped and reported, never fatal
            errors.append(f"{type(exc).__name__}: {exc}".splitlines()[0][:200])
    return out, errors


def cache_path(subset: SubsetSpec, cache_dir: str | Path | None = None) -> Path:
    """`<cache_dir>/<subset id>-<resolution>px`: the key names both so a listing is self-explaining."""
    return Path(cache_dir or default_cache_dir()) / f"{subset.id}-{subset.resolution}px"


def expected_manifest(subset: SubsetSpec, split: Split) -> dict[str, Any]:
    """What a valid cache's manifest must say before the counts and skipped files are filled in."""
    return {
        "format": FORMAT,
        "subset_id": subset.id,
        "subset": subset.to_dict(),
        "root": str(Path(subset.root).expanduser().resolve()),
        "classes": list(split.classes),
        "sources": {"train": [p for p, _ in split.train], "holdout": [p for p, _ in split.holdout]},
    }


def _matches(path: Path, expected: dict[str, Any]) -> bool:
    """A cache is trusted only if its manifest names the same subset and files and its arrays are whole."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
        if any(manifest.get(k) != v for k, v in expected.items()):
            return False
        for name in ("train", "holdout"):
            n = manifest["counts"][name]
            images = np.load(path / f"{name}_images.npy", mmap_mode="r")
            labels = np.load(path / f"{name}_labels.npy", mmap_mode="r")
            res = manifest["subset"]["resolution"]
            if images.shape != (n, res, res, 3) or labels.shape != (n,):
                return False
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def load_cache(
    subset: SubsetSpec,
    cache_dir: str | Path | None = None,
    *,
    progress: bool = False,
    workers: int | None = None,
) -> Cache:
    """The subset's cache, built first if missing or stale; many processes calling at once build once."""
    split = split_subset(subset)
    path = cache_path(subset, cache_dir)
    expected = expected_manifest(subset, split)
    if not _matches(path, expected):
        with storage_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(path) + ".lock"):
                if not _matches(path, expected):
                    sweep_dead_builders(path.parent, path.name)  # under the lock: no live builder of it
                    _build(path, subset, split, expected, progress=progress, workers=workers)
    manifest = json.loads((path / "manifest.json").read_text())
    parts = {  # memory-mapped: the loop copies them to the device or RAM in blocks
        name: CachedSplit(np.load(path / f"{name}_images.npy", mmap_mode="r"), np.load(path / f"{name}_labels.npy"))
        for name in ("train", "holdout")
    }
    return Cache(path, parts["train"], parts["holdout"], manifest)


@contextlib.contextmanager
def storage_errors(path: Path, setting: str = SETTING) -> Iterator[None]:
    """Turn a failed write under `path` (full disk, no permission, read-only) into a one-line DataError;
    `setting` is what the user changes to write elsewhere."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        raise DataError(write_failure(exc.filename or path, exc, setting)) from exc


def temp_folder(path: Path) -> Path:
    """A fresh temporary name next to `path` that says which process on which host is writing it."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}.{socket.gethostname()}")


def sweep_dead_builders(folder: Path, name: str) -> list[Path]:
    """Remove the temporary folders of `name` in `folder` whose writer on this host is gone; return them.

    Only folders whose pid is dead are touched, so a live builder keeps its folder; folders written on
    another host (a shared disk) are left alone, since its pids mean nothing here. The cache calls this
    holding the cache's lock, so even a pid reused by another container cannot hide a live builder.
    """
    host = socket.gethostname()
    removed = []
    for entry in folder.iterdir() if folder.is_dir() else ():
        match = TEMP.fullmatch(entry.name)
        if not match or match["host"] not in (None, host) or match["name"] != name:
            continue
        if not pid_alive(int(match["pid"])):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists here (a zombie counts as gone: it can write nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) said it exists


def bytes_needed(split: Split, resolution: int) -> int:
    """Disk a build of `split` takes: both uint8 arrays, the labels, and the manifest (~100 B a file)."""
    n = len(split.train) + len(split.holdout)
    return n * (resolution * resolution * 3 + 8 + 100) + 4 * 4096


def check_free_space(path: Path, needed: int) -> None:
    """Refuse to start a build that cannot fit, naming the folder, the bytes needed and the bytes free."""
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise DataError(
            f"cache {path} needs {needed:,} bytes ({needed / 1e6:.1f} MB) but {path.parent} has {free:,} bytes "
            f"free; free some space or point {SETTING} at a larger disk"
        )


def _build(
    path: Path,
    subset: SubsetSpec,
    split: Split,
    expected: dict[str, Any],
    *,
    progress: bool,
    workers: int | None,
) -> None:
    """Decode into a temporary folder next to the target, then rename it into place (atomic)."""
    for stale in path.parent.glob(f".{path.name}.stale-*"):  # a builder killed while deleting the old copy
        shutil.rmtree(stale, ignore_errors=True)
    check_free_space(path, bytes_needed(split, subset.resolution))
    tmp = temp_folder(path)
    try:
        tmp.mkdir(parents=True)
        whose = TEMP.fullmatch(tmp.name)
        manifest = dict(expected, counts={}, skipped=[], build_id=f"{whose['pid']}-{whose['id']}")
        root = Path(subset.root).expanduser()
        bar = tqdm(
            total=len(split.train) + len(split.holdout),
            desc="caching",
            unit="img",
            file=sys.stderr,
            disable=not progress,
        )
        with bar:
            for name, items in (("train", split.train), ("holdout", split.holdout)):
                paths = [str(root / p) for p, _ in items]
                errors = decode_into(tmp / f"{name}_images.npy", paths, subset.resolution, bar, workers)
                labels = np.array([y for (_, y), err in zip(items, errors, strict=True) if err is None], dtype=np.int64)
                np.save(tmp / f"{name}_labels.npy", labels)
                manifest["counts"][name] = len(labels)
                manifest["skipped"] += [
                    {"file": p, "split": name, "reason": err} for (p, _), err in zip(items, errors, strict=True) if err
                ]
        manifest["counts"]["skipped"] = len(manifest["skipped"])
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if path.exists():  # stale: move aside first, since a folder cannot be renamed over a full one
            stale = path.with_name(f".{path.name}.stale-{uuid.uuid4().hex[:8]}")
            path.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def allocate(target: Path, shape: tuple[int, ...]) -> np.memmap:
    """A writable uint8 .npy memory map whose blocks are reserved on disk before any page is touched.

    A sparse file (what `open_memmap` makes) lets a full disk surface as SIGBUS on whichever page is
    written first, killing the process with no message; `posix_fallocate` makes it an ENOSPC here instead.
    """
    out = np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=shape)
    if hasattr(os, "posix_fallocate"):
        with open(target, "r+b") as f:
            try:
                os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    exc.filename = str(target)
                    raise
    return out


def decode_into(target: Path, paths: list[str], resolution: int, bar: tqdm, workers: int | None) -> list[str | None]:
    """Decode `paths` into a memory-mapped .npy at `target` (so a 1k-class cache never sits in RAM),
    in a process pool when there are enough files to pay for one; failed files are left out. Returns
    one entry per path: None, or why it could not be read."""
    workers = workers or int(os.environ.get("ATTNAS_CACHE_WORKERS", 0)) or os.cpu_count() or 1
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    raw = target.with_suffix(".raw.npy")
    out = allocate(raw, (len(paths), resolution, resolution, 3))
    errors: list[str | None] = []
    if workers == 1 or len(paths) < IN_PROCESS_BELOW:
        results: Any = (_decode_chunk(chunk, resolution) for chunk in chunks)
        _drain(results, out, errors, bar)
    else:
        with decode_pool(workers) as pool:
            _drain(pool.map(_decode_chunk, chunks, [resolution] * len(chunks)), out, errors, bar)
    keep = np.flatnonzero([e is None for e in errors])
    if len(keep) == len(paths):
        out.flush()
        del out
        raw.rename(target)
        return errors
    final = allocate(target, (len(keep), *out.shape[1:]))
    for i in range(0, len(keep), 4096):  # compact in blocks: never the whole array in memory
        final[i : i + 4096] = out[keep[i : i + 4096]]
    final.flush()
    del out, final
    raw.unlink()
    return errors


@contextlib.contextmanager
def decode_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A process pool whose workers die with this process and never outlive the block.

    On success the pool is shut down as usual; on any error (a full disk, Ctrl-C) the queued chunks are
    cancelled and the workers killed at once rather than left decoding a build that is gone.
    """
    context = multiprocessing.get_context()
    # the workers' parent is this process, except under forkserver (then the server, which exits with us)
    parent = 0 if context.get_start_method() == "forkserver" else os.getpid()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=die_with_parent, initargs=(parent,))
    try:
        yield pool
    except BaseException:
        # no public way to kill the workers before Python 3.14 (kill_workers); `_processes` is the pool's own map
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.kill()
        for process in processes:
            process.join(timeout=5)
        raise
    pool.shutdown(wait=True)


def die_with_parent(parent: int) -> None:
    """Pool initializer: ask Linux to SIGKILL this worker when its parent dies (a no-op elsewhere).

    Without it, a builder killed by SIGKILL or the OOM killer leaves its workers (hundreds of MB each)
    running. A worker whose parent died before the request took effect exits at once.
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent and os.getppid() != parent:
        os._exit(1)


def _drain(results: Any, out: np.ndarray, errors: list[str | None], bar: tqdm) -> None:
    for array, errs in results:
        out[len(errors) : len(errors) + len(errs)] = array
        errors += errs
        bar.update(len(errs))
