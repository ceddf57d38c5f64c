"""trainer.threads.thread_count: each worker takes its share of the CPUs it may use."""

from __future__ import annotations

import torch

from trainer.threads import thread_count, use_threads

FOUR = {0, 1, 2, 3}


def test_alone_a_process_uses_every_cpu_it_may_use() -> None:
    assert thread_count(FOUR) == 4
    assert thread_count({2, 5}) == 2  # an affinity mask (taskset, a Slurm cpuset), not the machine's count


def test_workers_on_the_same_cpus_share_them_rounding_down_to_at_least_one() -> None:
    assert thread_count(FOUR, [FOUR]) == 2
    assert thread_count(FOUR, [FOUR, FOUR]) == 1  # 4 // 3: never more threads than cores
    assert thread_count({0, 1}, [{0, 1}] * 3) == 1  # more workers than cores: one each, no fewer


def test_workers_on_other_cpus_do_not_count() -> None:
    """Two Slurm tasks on one node, each in its own cpuset: neither shares with the other."""
    assert thread_count({0, 1}, [{2, 3}]) == 2
    assert thread_count({0, 1}, [{1, 2}, {2, 3}]) == 1


def test_slurm_cpus_per_task_caps_the_mask_and_explicit_counts_win() -> None:
    assert thread_count(FOUR, slurm_cpus=2) == 2
    assert thread_count(FOUR, [FOUR], slurm_cpus=2) == 1
    assert thread_count(FOUR, [FOUR], omp=3) == 3  # the user's OMP_NUM_THREADS is respected
    assert thread_count(FOUR, [FOUR], explicit=6, omp=3) == 6  # ATTNAS_THREADS wins


def test_use_threads_sets_torch() -> None:
    before = torch.get_num_threads()
    try:
        assert use_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
