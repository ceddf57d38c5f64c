"""One `attnas worker` process with the stubbed training of test_seeding.py (known seed noise, no torch run).

Usage: python seed_stub_worker.py STUDY.toml RUNS.log — every run it trains appends [spec id, seed] to RUNS.log.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from test_seeding import stub_measure, stub_train

from studies import worker
from studies.config import read_file

if __name__ == "__main__":
    study_file, log = sys.argv[1:3]
    ctx, study = worker.start(read_file(study_file), join=True)
    ctx = replace(ctx, measure=stub_measure, train=lambda *a, **k: stub_train(*a, log=log, sleep=0.05, **k))
    stats = worker.work(ctx, study, poll_s=0.05)
    print(f"ran {stats.ran}, failed {stats.failed}, queued seeds {stats.seeds}", flush=True)
