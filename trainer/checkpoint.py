"""Epoch checkpoints: everything a preempted run needs to finish with the same result as an unbroken one.

That is the weights, the optimizer's momentum, the epoch, the history, and the state of every random
generator the loop uses (shuffling and augmentation draw from their own `torch.Generator`s for exactly
this reason). Files are written to a temporary name and renamed, so a kill mid-write leaves the previous
checkpoint intact; they are read with `weights_only=True`, so a checkpoint cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import torch

FILE = "checkpoint.pt"


def run_dir(checkpoint_dir: str | Path, *parts: dict[str, Any]) -> Path:
    """One folder per (spec, subset, schedule): a different run never resumes another's checkpoint."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return Path(checkpoint_dir) / hashlib.sha256(canonical.encode()).hexdigest()[:16]


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write `state` atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The saved state, or None when there is none; a checkpoint that cannot be read is not trusted."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated or foreign file: start afresh rather than crash a worker
        return None
