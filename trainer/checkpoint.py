"""Epoch checkpoints: everything a preempted run needs to finish with the same result as an unbroken one.

That is the weights, the optimizer's momentum, the epoch, the history, and the state of every random
generator the loop uses (shuffling and augmentation draw from their own `torch.Generator`s for exactly
this reason). Files are written to a temporary name, synced and renamed, so a kill or a full disk mid-write
leaves the previous checkpoint intact (and no partial file); a failed write is one `CheckpointError` line
naming the path. They are read with `weights_only=True`, so a checkpoint cannot run code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import torch

from trainer.subsets import write_failure

FILE = "checkpoint.pt"
SETTING = "the checkpoint folder (checkpoint_dir=, or --runs)"


class CheckpointError(OSError):
    """A checkpoint that could not be written (full disk, no permission); the one line names the path and fix."""


def run_dir(checkpoint_dir: str | Path, *parts: dict[str, Any]) -> Path:
    """One folder per (spec, subset, schedule): a different run never resumes another's checkpoint."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return Path(checkpoint_dir) / hashlib.sha256(canonical.encode()).hexdigest()[:16]


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write `state` atomically: a temporary file, synced (a full disk may only say so at fsync), renamed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        cause = os_error(exc)
        if cause is None:
            raise
        error = CheckpointError(write_failure(path, cause, SETTING))
        error.errno = cause.errno
        raise error from exc
    finally:
        with contextlib.suppress(OSError):  # never let the clean-up hide the error being raised
            tmp.unlink(missing_ok=True)
    return path


def os_error(exc: BaseException) -> OSError | None:
    """The OSError behind `exc`: torch.save reports a failed write as a RuntimeError whose context is the OSError."""
    while exc is not None and not isinstance(exc, OSError):
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return exc


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The saved state, or None when there is none; a checkpoint that cannot be read is not trusted."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated or foreign file: start afresh rather than crash a worker
        return None
