"""benchmarks/device_runs.py: a plan made here trains elsewhere, as the benchmarks' own runs, and resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from search_space import SE, ArchSpec
from trainer import Schedule, SubsetSpec, dataset_root, proxy_train

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))
from device_runs import done_runs, plan_line  # noqa: E402

SCHEDULE = Schedule(epochs=1, batch_size=32, lr=0.1, width_mult=0.125, augment="pad_crop", flip=False, amp=False,
                    channels_last=False)
SUBSET = SubsetSpec(root="digits", train_per_class=12, holdout_per_class=6, resolution=16)
SPECS = [ArchSpec("resnet18"), ArchSpec("resnet18", stages={"c5": SE(16, "scale")})]


def runner(plan: Path, out: Path, *extra: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ATTNAS_CACHE": str(cache), "PYTHONPATH": str(BENCH.parent)}
    return subprocess.run([sys.executable, str(BENCH / "device_runs.py"), str(plan), "--out", str(out), "--device",
                           "cpu", "--procs", "1", *extra], capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    path = tmp_path / "plan.jsonl"
    path.write_text("".join(plan_line("ka.jsonl", {"name": s.name, "seed": seed}, s, SUBSET,
                                      Schedule(**{**SCHEDULE.to_dict(), "seed": seed})) + "\n"
                            for s in SPECS for seed in (0, 1)))
    return path


def test_a_plan_trains_each_run_once_as_the_benchmark_would(plan, tmp_path, attnas_cache):
    out = tmp_path / "out"
    first = runner(plan, out, cache=attnas_cache)
    assert first.returncode == 0, first.stderr
    assert "4 of 4 runs ended" in first.stdout
    records = [json.loads(line) for line in (out / "ka.jsonl").read_text().splitlines()]
    assert sorted((r["name"], r["seed"]) for r in records) == sorted((s.name, k) for s in SPECS for k in (0, 1))
    assert all(r["device"].startswith("cpu") and 0 <= r["top1"] <= 1 for r in records)
    # the benchmark reads them as its own runs ...
    done = done_runs(out / "ka.jsonl")
    assert set(done) == {(s.name, k) for s in SPECS for k in (0, 1)}
    # ... and each is the run the plan describes: the same result as training it here (one thread both ways)
    import torch

    torch.set_num_threads(1)
    tree = SubsetSpec(**{**SUBSET.to_dict(), "root": dataset_root("digits", attnas_cache)})
    here = proxy_train(SPECS[1], tree, Schedule(**{**SCHEDULE.to_dict(), "seed": 1}), cache_dir=attnas_cache).top1
    assert done[SPECS[1].name, 1] == here
    # a rerun resumes: nothing is trained or written twice
    again = runner(plan, out, cache=attnas_cache)
    assert again.returncode == 0 and "0 runs to do" in again.stdout
    assert len((out / "ka.jsonl").read_text().splitlines()) == 4


def test_no_run_starts_after_the_deadline(plan, tmp_path, attnas_cache):
    out = tmp_path / "out"
    cut = runner(plan, out, "--deadline", "0", cache=attnas_cache)
    assert cut.returncode == 0, cut.stderr
    assert "0 of 4 runs ended" in cut.stdout and not (out / "ka.jsonl").exists()
