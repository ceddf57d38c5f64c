"""Helpers for tests that run real `attnas` processes and wait on what they leave behind (a state on disk or in
the storage, never a guessed sleep). Importable from every test module: pyproject puts tests/ on the path."""

from __future__ import annotations

import contextlib
import signal
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


def sigint_state(pid: int | str = "self") -> str:
    """How process `pid` (or this one's main thread) treats SIGINT, from /proc: pending, blocked, ignored or
    caught. Why: a Ctrl-C test once saw its worker run on as if the signal never came; an ignored or blocked
    SIGINT is inherited through fork and exec, so the failure message names which of the two it was."""
    bit = 1 << (signal.SIGINT - 1)
    with contextlib.suppress(OSError):
        fields = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if line.startswith(("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")))
        return " ".join(f"{k}={'SIGINT' if int(v, 16) & bit else '-'}" for k, v in fields.items())
    return f"no /proc/{pid}/status"
