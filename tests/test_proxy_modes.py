"""benchmarks/proxy_modes.py: runs of trunks of different lengths stay apart, and each mode's model line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))
import pytest  # noqa: E402
from device_runs import done_runs  # noqa: E402
from proxy_modes import KEY, key_of, model, model_text, table  # noqa: E402

from search_space import ArchSpec  # noqa: E402

SPECS = [ArchSpec("resnet18"), ArchSpec("resnet18", width=0.5)]


def args(**kw) -> argparse.Namespace:
    base = {"scratch_seeds": 0, "trunk_epochs": 4, "ft_epochs": 12, "trunk_auto": False}
    return argparse.Namespace(**{**base, **kw})


def test_a_fine_tune_of_another_trunk_length_is_not_reused(tmp_path: Path) -> None:
    runs = tmp_path / "runs.jsonl"
    lines = [{**key_of("trunk", t, 8, f, s.name, 12), "top1": 0.5} for t, f in ((0, 0), (0, 2), (1, 1))
             for s in SPECS]
    runs.write_text("".join(json.dumps(r) + "\n" for r in lines))
    done = done_runs(runs, KEY)
    gflops = {s.name: 1.0 for s in SPECS}
    with pytest.raises(KeyError):  # the file holds trunk-8 fine-tunes only: a trunk-4 table finds none of them
        table(SPECS, done, args(), 16, gflops, 100, None)
    rows, models = table(SPECS, done, args(trunk_epochs=8), 16, gflops, 100, None)
    assert [r["mode"].split(" (")[0] for r in rows] == ["trunk, fine-tune noise only", "trunk, whole proxy"]
    assert [m["mode"] for m in models] == ["trunk 8 + fine-tune 12"]  # --scratch-seeds 0: no scratch rows


def test_the_model_recovers_a_known_spread_and_noise_whatever_each_repeat_s_shift() -> None:
    rng = np.random.default_rng(0)
    true = rng.normal(0.55, 0.02, 200)
    shifts = [0.0, -0.05, 0.03, 0.01, -0.02, 0.04]  # a trunk's, or a seed's, lift of every architecture at once
    repeats = [{str(i): m + d + rng.normal(0, 0.01) for i, m in enumerate(true)} for d in shifts]
    m = model("trunk 4 + fine-tune 12", repeats)
    assert m["true_spread"] == pytest.approx(0.02, rel=0.15) and m["sigma"] == pytest.approx(0.01, rel=0.1)
    assert m["one_run_repeat_tau"] == pytest.approx(2 / np.pi * np.arcsin(0.8), abs=0.05)  # rho = s²/(s²+σ²)
    # 0.7 between repeats needs s² / (s² + σ²/k) = sin(0.35 pi) = 0.891: k = 0.25 / 0.1223 = 2.04
    assert m["runs_for_repeat_tau_0.7"] == pytest.approx(2.04, rel=0.3)
    assert m["repeats"] == 6 and "true spread between architectures" in model_text(m)


def test_no_spread_says_no_number_of_runs_ranks_them() -> None:
    repeats = [{str(i): v for i in range(16)} for v in (0.49, 0.51, 0.50)]  # every placement alike in each
    m = model("trunk 8 + fine-tune 2", repeats)
    assert m["runs_for_repeat_tau_0.7"] is None and "no number of runs ranks them" in model_text(m)
