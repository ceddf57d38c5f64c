"""Who and where a worker is: host, process and, under Slurm, the job and array task running it.

Kept in one place because three readers need the same answer: the trial record (so `attnas status` can say
which host and Slurm task runs each trial), the worker's log lines, and the study's record of how it was made.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
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


# -- what made a study: recorded once per worker ------------------------------------------------------------
#: Study system attr prefix of each worker's environment record: `attnas:env:<worker number>`.
ENV_KEY = "attnas:env:"
#: What two workers of one study should share: a mixed cluster (other versions, another device type) is a
#: common cause of a study that does not reproduce, so a worker that differs from worker 0 in any says so.
MATCHING = ("attnas", "torch", "torchvision", "optuna", "device")
GIT_TIMEOUT_S = 2.0


def environment(device: str = "cpu", worker: int | None = None) -> dict[str, Any]:
    """How this worker runs, JSON-ready: versions (and attnas' git commit), device and its name, the instruction
    set torch's CPU kernels use (`cpu_capability`: AVX2, AVX512, ...: one CPU model name can hide either, and the
    two round differently, so two fronts from one study file can differ on it), threads, host, start time.
    Stored with the study (studies.queue.join) so a result says what made it. `threads` is the worker's share of
    its CPUs when it joins (studies.host); each trial records the count it trained with."""
    import platform
    from datetime import UTC, datetime

    import optuna
    import torch
    import torchvision

    from .host import size_threads

    commit, dirty = git_state()
    threads = size_threads()
    return {"worker": worker, **identity(), "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "attnas": package_version(), "commit": commit, "dirty": dirty, "python": platform.python_version(),
            "torch": torch.__version__, "torchvision": torchvision.__version__, "optuna": optuna.__version__,
            "device": device_type(device), "device_name": device_name(device),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": threads}


def package_version() -> str | None:
    """attnas' installed version (None when it runs from a tree that was never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("attnas")
    except PackageNotFoundError:
        return None


def source_root() -> Path:
    """The folder holding attnas' packages (a git checkout for an editable install, else site-packages)."""
    return Path(__file__).resolve().parent.parent


def git_state(root: Path | None = None) -> tuple[str | None, bool | None]:
    """(HEAD commit, uncommitted changes to tracked files) of the checkout attnas runs from; (None, None) when it
    is not one, git is missing or slow. Never raises: provenance must not stop a worker."""
    root = root or source_root()
    if not (root / ".git").exists():
        return None, None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S)
        if head.returncode != 0:
            return None, None
        changed = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head.stdout.strip() or None, bool(changed.stdout.strip()) if changed.returncode == 0 else None


def device_type(device: str) -> str:
    """'cuda:1' -> 'cuda', 'cpu' -> 'cpu'."""
    return device.split(":", 1)[0]


def device_name(device: str) -> str | None:
    """The GPU's name under CUDA (torch.cuda.get_device_name), else the CPU model: two CPUs' float results can
    steer a sampler apart, so the model is part of what made a study."""
    try:
        if device_type(device) == "cuda":
            import torch

            return str(torch.cuda.get_device_name(device))
        return cpu_model()
    except Exception:
        return None


def cpu_model() -> str | None:
    """The CPU's model name (/proc/cpuinfo on Linux, else what `platform` knows)."""
    import platform

    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: ")) and ":" in line:
                value = line.split(":", 1)[1].strip()
                if value and not value.isdigit():
                    return value
    return platform.processor() or platform.machine() or None


def differences(first: dict[str, Any], other: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The MATCHING keys on which `other` differs from `first`: key -> (first's value, other's value)."""
    return {k: (first.get(k), other.get(k)) for k in MATCHING if first.get(k) != other.get(k)}


def mismatch_line(first: dict[str, Any], other: dict[str, Any]) -> str | None:
    """One warning line when a joining worker's versions or device type differ from worker 0's, else None."""
    diff = differences(first, other)
    if not diff:
        return None
    what = ", ".join(f"{k} {b} (worker {first.get('worker', 0)}: {a})" for k, (a, b) in diff.items())
    return (f"warning: worker {other.get('worker')} on {other.get('host')} differs from worker "
            f"{first.get('worker', 0)} on {first.get('host')}: {what}; a mixed setup may not reproduce the study")
