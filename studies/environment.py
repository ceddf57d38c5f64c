"""Who and where a worker is: host, process and, under Slurm, the job and array task running it.

Kept in one place because three readers need the same answer: the trial record (so `attnas status` can say
which host and Slurm task runs each trial), the worker's log lines, and the study's record of how it was made.
"""

from __future__ import annotations

import os
import socket
from typing import Any

#: Slurm's variables that name a task, under the short keys attnas records.
SLURM_KEYS = {"SLURM_JOB_ID": "job", "SLURM_ARRAY_JOB_ID": "array_job", "SLURM_ARRAY_TASK_ID": "array_task"}


def identity() -> dict[str, Any]:
    """This process's host and pid, plus its Slurm job and array task when it runs under Slurm."""
    ident: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
    slurm = {key: os.environ[var] for var, key in SLURM_KEYS.items() if os.environ.get(var)}
    if slurm:
        ident["slurm"] = slurm
    return ident


def where(ident: dict[str, Any] | None) -> str:
    """One short label for an identity: `host:pid`, or `host slurm 123_4` (array) / `host slurm 123`."""
    if not ident:
        return "-"
    slurm = ident.get("slurm") or {}
    if slurm.get("array_job") and slurm.get("array_task") is not None:
        return f"{ident.get('host')} slurm {slurm['array_job']}_{slurm['array_task']}"
    if slurm.get("job"):
        return f"{ident.get('host')} slurm {slurm['job']}"
    return f"{ident.get('host')}:{ident.get('pid')}"
