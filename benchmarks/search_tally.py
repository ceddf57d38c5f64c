"""Did each kept real search of the known-answer example find the answer? Every search checked leave-one-out.

Usage: .venv/bin/python benchmarks/search_tally.py [STUDY.toml] --truth FILE.jsonl --search FILE.jsonl ... [--json]

Each real search's runs are kept (`known_answer.py --search --export`), and each was checked, when it ended,
against the truth as it stood: the base runs pooled with the searches before it. The tally so counts against
truths of different sizes. This script recounts every search against one rule: the truth is the base runs
(`--truth`) pooled with every *other* search's runs (never its own, whose seeds would pass for independent
confirmation of its own answer), its best the top mean and every placement not separated from it at 95%
(known_answer.ground_truth). A search's answer is its shown front's most accurate member, the one a user reads
off it: its placement with the highest mean over that search's runs (the most accurate trial is always on the
front, and the shown front folds only less accurate members into it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import fmean

from known_answer import EXAMPLE, ground_truth, short  # benchmarks/ is the script's own folder
from search_odds import pooled

from studies import config as study_config


def answer(runs: dict[str, list[float]]) -> tuple[str, float, int]:
    """(placement, mean top-1, runs) of a search's most accurate placement."""
    name = max(runs, key=lambda n: fmean(runs[n]))
    return name, fmean(runs[name]), len(runs[name])


def tally(base: str, searches: list[str], names: set[str]) -> list[dict]:
    """One row per search: its answer, and that answer's rank in the truth of every other file."""
    rows = []
    for search in searches:
        truth = ground_truth({n: v for n, v in pooled([base, *(s for s in searches if s != search)]).items()
                              if n in names})
        ranked = sorted(truth["means"], key=lambda n: -truth["means"][n])
        name, mean, runs = answer({n: v for n, v in pooled([search]).items() if n in names})
        rows.append({"search": Path(search).name, "answer": name, "top1": mean, "runs": runs,
                     "truth_rank": ranked.index(name) + 1, "truth_best": truth["best"],
                     "hit": name in truth["best"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", nargs="?", default=str(EXAMPLE))
    parser.add_argument("--truth", required=True, help="the base ground-truth runs (benchmarks/known_answer.py)")
    parser.add_argument("--search", action="append", required=True, help="a search's exported runs (repeatable)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if len(args.search) < 2:
        raise SystemExit("--search: give at least two searches' runs files (each is checked against the others)")
    specs = {s.name: s for s in study_config.read_file(args.study).space.enumerate()}
    rows = tally(args.truth, args.search, set(specs))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        best = ", ".join(short(specs[n]) for n in r["truth_best"])
        print(f"{r['search']:<40} answer {short(specs[r['answer']]):<12} {100 * r['top1']:5.1f}% ({r['runs']} runs)"
              f"  truth rank {r['truth_rank']:>2}  {'hit ' if r['hit'] else 'miss'}  (truth's best: {best})")
    print(f"hits: {sum(r['hit'] for r in rows)} of {len(rows)} searches, each against the base runs and the "
          "other searches' runs")


if __name__ == "__main__":
    main()
