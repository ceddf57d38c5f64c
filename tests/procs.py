"""Helpers for tests that run real `attnas` processes and wait on what they leave behind (a state on disk or in
the storage, never a guessed sleep). Importable from every test module: pyproject puts tests/ on the path."""

from __future__ import annotations

import subprocess
from pathlib import Path

from trainer.checkpoint import load_checkpoint


def finish(*workers: subprocess.Popen, timeout: float = 300) -> list[str]:
    """Wait for each process to exit 0 (else its stderr is the failure) and return their stderr. The timeout
    bounds a hung worker; a slow one on a loaded 2-core machine stays well inside it."""
    errors = []
    for w in workers:
        _, stderr = w.communicate(timeout=timeout)
        assert w.returncode == 0, stderr
        errors.append(stderr)
    return errors


def checkpoint_epoch(folder: Path) -> int:
    """The most epochs any `*/checkpoint.pt` under `folder` (a study's runs/ or trunks/) holds; 0 while there is
    none or one is half-written."""
    states = [load_checkpoint(path) for path in folder.glob("*/checkpoint.pt")]
    return max((int(s["epoch"]) for s in states if s), default=0)
