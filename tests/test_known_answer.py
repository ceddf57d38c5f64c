"""benchmarks/known_answer.py: a search's runs exported, and pooled into a truth that never holds the checked
search's own runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))
from known_answer import ground_truth, noise_text, pooled_runs, row_text, run_line  # noqa: E402

from studies.records import Status, TrialRecord  # noqa: E402


def test_a_trained_trial_runs_at_the_study_seed_and_an_extra_seed_at_its_own() -> None:
    trained = TrialRecord(0, Status.TRAINED, spec_name="a", top1=0.6, seconds=10.0)
    extra = TrialRecord(5, Status.SEED, spec_name="a", top1=0.58, seconds=11.0, seed=21, seed_of=0)
    assert run_line(trained, 20, "s") == {"name": "a", "seed": 20, "top1": 0.6, "seconds": 10.0, "study": "s"}
    assert run_line(extra, 20, "s")["seed"] == 21
    for nothing in (TrialRecord(1, Status.REUSED, spec_name="a", top1=0.6, reused_from=0),  # exported once, as 0
                    TrialRecord(2, Status.DIVERGED, spec_name="a", error="diverged"),
                    TrialRecord(3, Status.QUEUED, state="WAITING")):
        assert run_line(nothing, 20, "s") is None


def write(path: Path, runs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in runs))
    return path


def test_other_files_runs_join_the_truth_and_move_its_best(tmp_path: Path) -> None:
    runs = {"a": [0.62, 0.64, 0.60], "b": [0.60, 0.59, 0.60], "c": [0.50, 0.51, 0.49]}
    assert ground_truth(runs)["best"] == ["a"]  # 3 seeds: a separated from b
    other = [{"name": "a", "seed": s, "top1": 0.58, "study": "other"} for s in (20, 21, 22)]
    other += [{"name": "b", "seed": 20, "top1": 0.60, "study": "other"},
              {"name": "zz", "seed": 20, "top1": 0.9, "study": "other"}]  # not in this space: left out
    more = write(tmp_path / "search.jsonl", other)
    pooled = pooled_runs(runs, [more], exclude="mine")
    assert pooled["a"] == [0.62, 0.64, 0.60, 0.58, 0.58, 0.58] and len(pooled["b"]) == 4 and "zz" not in pooled
    assert runs["a"] == [0.62, 0.64, 0.60]  # the seed-indexed runs (single runs' tau) are left as they were
    assert set(ground_truth(pooled)["best"]) == {"a", "b"}  # the winner's lead shrank into a tie


def test_a_search_is_not_checked_against_its_own_runs(tmp_path: Path) -> None:
    own = write(tmp_path / "own.jsonl", [{"name": "a", "seed": 20, "top1": 0.6, "study": "mine"}])
    with pytest.raises(SystemExit, match="holds runs of mine, the search being checked"):
        pooled_runs({"a": [0.5]}, [own], exclude="mine")
    with pytest.raises(SystemExit, match="does not exist"):
        pooled_runs({"a": [0.5]}, [tmp_path / "missing.jsonl"], exclude=None)


def test_no_file_is_counted_twice(tmp_path: Path) -> None:
    truth = write(tmp_path / "truth.jsonl", [{"name": "a", "seed": 0, "top1": 0.6}])
    other = write(tmp_path / "other.jsonl", [{"name": "a", "seed": 20, "top1": 0.6, "study": "other"}])
    with pytest.raises(SystemExit, match="already in the truth"):
        pooled_runs({"a": [0.6]}, [truth], exclude=None, runs_file=truth)
    with pytest.raises(SystemExit, match="already in the truth"):
        pooled_runs({"a": [0.6]}, [other, tmp_path / "." / "other.jsonl"], exclude=None, runs_file=truth)
    assert pooled_runs({"a": [0.6]}, [other], exclude=None, runs_file=truth)["a"] == [0.6, 0.6]


def test_one_seed_prints_dashes_not_nan_and_says_how_to_measure_the_noise() -> None:
    row = {"name": "r18-c5:nl", "mean": 0.931, "se": float("nan"), "gap_to_plain_in_sigma": float("nan"),
           "gflops": 1.847, "best": False}
    line, header = row_text(row), noise_text(float("nan"), float("nan"))
    assert "nan" not in line + header
    assert line.split() == ["r18-c5:nl", "93.1%", "-", "-", "1.847"]
    assert "--seeds 2" in header
    measured = row_text({**row, "se": 0.0089, "gap_to_plain_in_sigma": 1.1, "best": True})
    assert "0.89" in measured and "+1.1" in measured and measured.rstrip().endswith("*")
    assert noise_text(0.0126, 0.6) == "seed sigma 1.26 pts, spread/noise 0.60"
