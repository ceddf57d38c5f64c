"""How many intra-op threads one training process uses: its share of the CPUs it may use.

Why: torch's default is one OpenMP thread per core *of the machine*, whatever else runs there. N workers on
one machine then run N x cores threads, which spin when oversubscribed; measured on a 2-core machine (issue
16): 7-10 images/s with the default threads against 164 with one thread each, under the same load. A process
that knows which CPUs it may use and how many other workers share them takes its share instead.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence

import torch


def thread_count(cpus: Collection[int], others: Sequence[Collection[int]] = (), *, slurm_cpus: int | None = None,
                 explicit: int | None = None, omp: int | None = None) -> int:
    """Threads for a process allowed on `cpus`, sharing them with workers allowed on `others` (their CPUs).

    An `explicit` count (ATTNAS_THREADS) wins, then the user's own OMP_NUM_THREADS; else the usable CPUs
    (the affinity mask, capped by Slurm's --cpus-per-task) divided among this process and every other worker
    whose CPUs overlap them, rounded down and at least 1 (rounding up would oversubscribe the cores again).
    Workers on disjoint CPUs (two Slurm tasks with their own cpusets) do not share.
    """
    if explicit:
        return max(1, explicit)
    if omp:
        return max(1, omp)
    mine = set(cpus)
    usable = len(mine) if slurm_cpus is None else min(len(mine), slurm_cpus)
    sharing = 1 + sum(1 for other in others if mine.intersection(other))
    return max(1, usable // sharing)


def allowed_cpus() -> frozenset[int]:
    """The CPUs this process may run on (its affinity mask; every CPU where the OS has no masks)."""
    if hasattr(os, "sched_getaffinity"):
        return frozenset(os.sched_getaffinity(0))
    return frozenset(range(os.cpu_count() or 1))


def positive_env(name: str) -> int | None:
    """An environment variable holding a positive integer, else None (unset, empty or not a number)."""
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def use_threads(count: int) -> int:
    """Set torch's intra-op threads to `count` (a no-op when already so); returns it."""
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
