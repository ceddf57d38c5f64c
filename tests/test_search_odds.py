"""benchmarks/search_odds.py: simulated searches follow the study's seeding and front rules."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))
import pytest  # noqa: E402
from search_odds import first, measured, one_by_one, one_search, pooled, replayed, rule_of, stricter  # noqa: E402

from studies import seeding  # noqa: E402
from studies.records import Status, TrialRecord  # noqa: E402

GFLOPS = {"a": 1.820, "b": 1.821, "c": 1.847, "d": 1.856}  # one cost level at the shown front's 2 % tolerance


def test_a_placement_far_above_its_seed_noise_is_the_front_of_every_search() -> None:
    rng = np.random.default_rng(0)
    means = {"a": 0.50, "b": 0.50, "c": 0.70, "d": 0.50}  # c: 10 sigma above the rest
    for _ in range(50):
        shown, contenders, runs, top = one_search(means, 0.02, GFLOPS, 2500, 3, 0.02, rng)
        assert shown == {"c"} and contenders == {"c"} and top == "c"
        assert 1 <= runs <= 3


def test_placements_within_noise_share_the_front_and_get_seeds() -> None:
    rng = np.random.default_rng(1)
    means = dict.fromkeys(GFLOPS, 0.50)  # no true difference: any of them may lead a search, none by its number
    leaders = Counter()
    costs = []
    for _ in range(200):
        shown, contenders, runs, top = one_search(means, 0.03, GFLOPS, 2500, 3, 0.02, rng)
        assert len(shown) == 1 and shown <= contenders and shown == {top}
        leaders.update(shown)
        costs.append(runs)
    assert set(leaders) == set(GFLOPS) and min(leaders.values()) >= 20
    assert np.mean(costs) > 1.5  # ties are what the auto-seeds rule spends seeds on


def test_runs_files_are_read_per_epochs_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    lines = [{"mode": "scratch", "seed": 10, "name": "a", "epochs": 8, "top1": 0.4},
             {"mode": "scratch", "seed": 10, "name": "a", "epochs": 4, "top1": 0.2},
             {"mode": "trunk", "seed": 0, "name": "a", "epochs": 8, "top1": 0.9},
             {"mode": "scratch", "seed": 11, "name": "a", "epochs": 8, "top1": 0.5}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"mode": "scra')
    assert measured(f"{path}@8") == {"a": [0.4, 0.5]}
    assert measured(str(path)) == {"a": [0.4, 0.2, 0.9, 0.5]}


def test_the_answer_read_off_the_front_is_its_most_accurate_member_not_its_cheapest() -> None:
    rng = np.random.default_rng(2)
    gflops = {"cheap": 1.0, "dear": 2.0}  # two cost levels: both on every front, the dear one 10 sigma better
    for _ in range(20):
        shown, _, _, top = one_search({"cheap": 0.50, "dear": 0.70}, 0.02, gflops, 2500, 3, 0.02, rng)
        assert shown == {"cheap", "dear"} and top == "dear"


def test_a_runs_file_given_twice_is_refused_not_counted_twice(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps({"mode": "scratch", "seed": 0, "name": "a", "epochs": 8, "top1": 0.4}) + "\n")
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"mode": "scratch", "seed": 1, "name": "a", "epochs": 8, "top1": 0.5}) + "\n")
    assert pooled([str(path), str(other)]) == {"a": [0.4, 0.5]}
    for again in (str(tmp_path / "." / "runs.jsonl"), f"{path}@8"):  # the same file, by another path or selection
        with pytest.raises(SystemExit, match="given twice"):
            pooled([str(path), again])


def test_a_noisy_placement_draws_with_its_own_sigma_and_wins_by_luck() -> None:
    """`--own-sigma`: each placement's runs are drawn with its own σ, so a noisy one below the best leads some
    searches on lucky runs; drawn with one quiet σ it never does."""
    rng = np.random.default_rng(3)
    means = {"a": 0.50, "b": 0.50, "c": 0.55, "d": 0.52}
    own = {"a": 0.002, "b": 0.002, "c": 0.002, "d": 0.08}
    tops = Counter(one_search(means, own, GFLOPS, 2500, 3, 0.02, rng)[3] for _ in range(200))
    assert set(tops) == {"c", "d"} and 20 <= tops["d"] <= 150, tops
    assert {one_search(means, 0.002, GFLOPS, 2500, 3, 0.02, rng)[3] for _ in range(50)} == {"c"}


def trained(number: int, top1: float, runs: int = 1, gflops: float = 1.82) -> TrialRecord:
    return TrialRecord(number=number, status=Status.TRAINED, spec_id=str(number), top1=top1, gflops=gflops, params=1,
                       seeds=(top1,) * runs if runs > 1 else ())


def seeded(rule: str, rs: list[TrialRecord], max_seeds: int = 6, sigma: float = 0.02) -> list[int]:
    return seeding.wanted(rs, {}, (), seeding.Noise(sigma, 2500, 2), max_seeds, rule=rule_of(rule, max_seeds))


def test_one_sided_rule_puts_a_trial_off_the_front_that_the_two_sided_test_still_ties() -> None:
    rs = [trained(0, 0.60), trained(1, 0.55)]  # 0.05 apart: 1.77 sd of the difference, between 1.645 and 1.96
    assert seeded("attnas", rs) == [0, 1]
    assert seeded("one-sided", rs) == []
    # one cost level: each is "cheaper" than the other, so across levels only is the test one-sided
    assert seeded("one-sided-across", rs) == [0, 1]
    across = [trained(0, 0.60, gflops=1.0), trained(1, 0.55, gflops=2.0)]
    assert seeded("attnas", across) == [0, 1]
    assert seeded("one-sided-across", across) == []


def test_lucb_rule_seeds_the_front_and_its_most_dangerous_challenger_only() -> None:
    rs = [trained(0, 0.60), trained(1, 0.59), trained(2, 0.58)]  # one cost level, every pair tied
    assert seeded("attnas", rs) == [0, 1, 2]
    assert seeded("lucb", rs) == [0, 1]
    capped = [rs[0], trained(1, 0.59, runs=6), rs[2]]  # the first challenger has its max_seeds: the next one
    assert seeded("lucb", capped) == [0, 2]


def test_futility_rule_stops_a_tie_that_max_seeds_runs_could_not_separate() -> None:
    assert seeded("attnas", [trained(0, 0.600), trained(1, 0.599)]) == [0, 1]
    assert seeded("futility:0.2", [trained(0, 0.600), trained(1, 0.599)]) == []  # 3 % chance to separate
    assert seeded("futility:0.2", [trained(0, 0.60), trained(1, 0.57)]) == [0, 1]  # ~76 %


def test_every_rule_finds_a_placement_far_above_the_noise_and_an_unknown_rule_is_refused() -> None:
    rng = np.random.default_rng(4)
    means = {"a": 0.50, "b": 0.50, "c": 0.70, "d": 0.50}
    for name in ("attnas", "one-sided", "one-sided-across", "lucb", "one-sided+lucb", "futility:0.2"):
        shown, _, runs, top = one_search(means, 0.02, GFLOPS, 2500, 6, 0.02, rng, rule=rule_of(name, 6))
        assert shown == {"c"} and top == "c" and 1 <= runs <= 6
    with pytest.raises(SystemExit, match="--rule best: unknown"):
        rule_of("best", 6)


def test_one_seed_per_free_worker_takes_the_front_member_and_its_challenger_first() -> None:
    """`--workers`' order (`first`): at 1.0 GFLOPs member 2 is tied with 1 and 0, at 0.5 member 3 with 4. Each
    member and its most dangerous challenger (highest mean + 1.96 se: 1, not 0) first, by upper bound; 0, tied
    too, waits though its bound is above the cheap pair's. A capped member's challenger still goes first."""
    rs = [trained(0, 0.785, gflops=1.0), trained(1, 0.790, gflops=1.0), trained(2, 0.800, gflops=1.0),
          trained(3, 0.700, gflops=0.5), trained(4, 0.690, gflops=0.5)]
    noise = seeding.Noise(0.01, 2500, 3)
    assert first([0, 1, 2, 3, 4], rs, noise) == [2, 1, 3, 4, 0]
    assert first([0, 1, 3, 4], rs, noise) == [1, 3, 4, 0]  # 2 at max_seeds or in flight
    assert first([0, 2, 3, 4], rs, noise) == [2, 0, 3, 4]  # 1 capped: 0 is 2's challenger now


def test_one_seed_per_free_worker_gives_the_front_its_second_runs_before_trusting_sigma() -> None:
    """With σ pooled over fewer than 3 trials every exact-front member with one run is wanted as well; after,
    only the rule's undecided."""
    rs = [trained(0, 0.60, gflops=1.0), trained(1, 0.90, gflops=2.0), trained(2, 0.50, gflops=3.0)]
    rule = one_by_one(None)
    assert rule(rs, seeding.Noise(0.01, 2500, 1), ("top1", "gflops"), 0.02) == {0, 1}
    assert rule(rs, seeding.Noise(0.01, 2500, 3), ("top1", "gflops"), 0.02) == set()


def test_searches_with_one_seed_per_free_worker_find_a_placement_far_above_the_noise() -> None:
    rng = np.random.default_rng(5)
    means = {"a": 0.50, "b": 0.50, "c": 0.70, "d": 0.50}
    for workers, fifo in ((1, False), (2, False), (2, True)):
        shown, _, runs, top = one_search(means, 0.02, GFLOPS, 2500, 6, 0.02, rng, workers=workers, fifo=fifo)
        assert shown == {"c"} and top == "c" and 1 <= runs <= 6


def test_a_stricter_z_keeps_a_tie_the_study_s_test_separates_and_only_for_the_study_s_rule() -> None:
    rs = [trained(0, 0.60), trained(1, 0.54)]  # 0.06 apart: 2.12 sd of the difference (σ 0.02 per run)
    noise = seeding.Noise(0.02, 2500, 3)
    assert seeding.wanted(rs, {}, (), noise, 6) == []
    assert seeding.wanted(rs, {}, (), noise, 6, rule=stricter(None, 2.3)) == [0, 1]
    with pytest.raises(SystemExit, match="--z: only with --rule attnas"):
        stricter(rule_of("lucb", 6), 2.3)


def test_a_real_search_replayed_on_its_own_runs_asks_for_what_it_trained_or_names_what_it_lacks(tmp_path: Path) -> None:
    """`--replay`: the study's rule on a search's exported runs, in seed order. a (cheap) and c (costlier, far
    better) are both on the exact front, so each gets a second run while σ is unmeasured; with two runs each
    they are some 28 pooled σ apart and the rule asks for nothing more."""
    def export(path: Path, runs: dict[str, list[float]]) -> str:
        path.write_text("".join(json.dumps({"name": n, "seed": 10 + i, "top1": t}) + "\n"
                                for n, ts in runs.items() for i, t in reversed(list(enumerate(ts)))))
        return str(path)

    gflops = {"a": 1.0, "c": 2.0}
    done = replayed(export(tmp_path / "done.jsonl", {"a": [0.50, 0.51], "c": [0.70, 0.69]}), gflops, 2500, 6)
    assert done["trained"] == done["replayed"] == 2 and done["beyond"] == [] and done["differ"] == {}
    short = replayed(export(tmp_path / "short.jsonl", {"a": [0.50], "c": [0.70]}), gflops, 2500, 6)
    assert short["trained"] == short["replayed"] == 1 and short["beyond"] == ["a", "c"]
    with pytest.raises(SystemExit, match="no runs of the study's architectures"):
        replayed(export(tmp_path / "other.jsonl", {"b": [0.5]}), gflops, 2500, 6)
