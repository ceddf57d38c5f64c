"""Logs a cluster user can read: off a terminal one timestamped line per event with the full architecture name,
never wrapped or cut; `--log-format json` the same events as JSON lines; a Slurm task's `.out` file logs each
trial and epoch; the front names every member in full, on a narrow terminal too."""

from __future__ import annotations

import io
import json
import re
import shutil
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import optuna
import pytest

from studies.records import records

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _names(path: Path, tmp_path: Path) -> dict[int, str]:
    """Each trial's full architecture name, as the study stored it."""
    study = optuna.load_study(study_name=path.stem, storage=f"sqlite:///{tmp_path}/{path.stem}.db")
    return {r.number: r.spec_name for r in records(study)}


def _front_names(attnas, path: Path) -> list[str]:
    proc = attnas("front", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    return [r["name"] for r in json.loads(proc.stdout)]


def test_search_to_a_file_logs_each_epoch_with_the_full_name_and_the_whole_front(tiny_study, tmp_path, attnas):
    path = tiny_study(trials=2, epochs=2, kinds='["none", "se", "gc"]')
    proc = attnas("search", str(path), "--no-wandb", "--report", str(tmp_path / "r.html"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    front_at = next(i for i, line in enumerate(lines) if line.startswith("Pareto front of"))
    events = lines[:front_at]
    assert events and all(re.match(STAMP + " ", line) for line in events), events  # no wrapped continuation
    assert any(len(line) > 100 for line in events)  # long lines stay whole (rich would wrap them at 80)
    times = [datetime.fromisoformat(line.split(" ", 1)[0]) for line in events]
    assert times == sorted(times)
    text = [line.split(" ", 1)[1] for line in events]
    names = _names(path, tmp_path)
    assert len(names) == 2
    for n, name in names.items():
        mine = [t for t in text if t.startswith(f"trial {n} ")]
        assert [t.split(" ")[2] for t in mine] == ["start", "epoch", "epoch", "end"], mine
        assert mine[0].startswith(f"trial {n} start {name} ") and " GFLOPs" in mine[0] and " on " in mine[0]
        for e, line in zip((1, 2), mine[1:3], strict=True):
            assert line.startswith(f"trial {n} epoch {e}/2 {name} loss "), line
            assert all(k in line for k in (" top-1 ", " img/s ", " elapsed ", " eta ")), line
        assert mine[3].startswith(f"trial {n} end trained {name} top-1 ") and " ± " in mine[3], mine[3]
    assert text[0].startswith("worker ") and text[-1].startswith("worker ") and "ran 2 trial(s)" in text[-1]

    front = _front_names(attnas, path)
    rows = lines[front_at + 3:front_at + 3 + len(front)]  # title, header, rule, then one row per member
    assert front and [row.split()[0] for row in rows] == front, lines[front_at:]
    after = lines[front_at + 3 + len(front):]  # the front's notes (studies.cli.read.front_notes), then the report
    report_at = next(i for i, line in enumerate(after) if line.startswith("report: "))
    notes = ("'within noise of': ", "'same cost as': ", "within noise of the front, on none: ")
    assert "…" not in proc.stdout and all(line.startswith(notes) for line in after[:report_at]), after


def test_json_log_format_writes_every_event_as_one_json_line(tiny_study, tmp_path, attnas):
    path = tiny_study(trials=1, epochs=2, kinds='["none", "se", "gc"]')
    proc = attnas("search", str(path), "--no-wandb", "--log-format", "json", "--report", str(tmp_path / "r.html"),
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]  # every line of stdout is one JSON object
    kinds = [e["event"] for e in events]
    assert kinds[0] == "worker_start" and kinds[-3:] == ["worker_end", "front", "report"], kinds
    for e in events:
        datetime.fromisoformat(e["time"])
    names = _names(path, tmp_path)
    for n, name in names.items():
        mine = [e for e in events if e.get("trial") == n]
        assert [e["event"] for e in mine] == ["trial_start", "epoch", "epoch", "trial_end"]
        start, *epochs, end = mine
        assert start["name"] == name and start["gflops"] > 0 and start["worker"]["pid"] > 0
        assert start["epochs"] == 2 and start["retry_of"] is None
        assert [(e["name"], e["epoch"], e["epochs"]) for e in epochs] == [(name, 1, 2), (name, 2, 2)]
        for e in epochs:
            assert e["train_loss"] > 0 and 0 <= e["top1"] <= 1 and e["images_per_s"] > 0
            assert e["elapsed_s"] > 0 and e["eta_s"] >= 0
        assert epochs[-1]["eta_s"] == 0
        assert end["outcome"] == "trained" and end["name"] == name and 0 <= end["top1"] <= 1
        assert end["se"] > 0 and end["seconds"] > 0 and end["epochs"] == 2
    front = next(e for e in events if e["event"] == "front")
    assert [m["name"] for m in front["members"]] == _front_names(attnas, path)
    assert (tmp_path / next(e for e in events if e["event"] == "report")["path"]).is_file()
    assert len(names) == 1 and events[kinds.index("worker_end")]["ran"] == 1


def test_a_slurm_array_task_logs_each_trial_and_epoch_to_its_out_file(tiny_study, tmp_path, cli_env):
    """`launch.run_worker` is what each array task runs; submitit points its stdout at the task's `.out` file."""
    path = tiny_study(trials=1, epochs=2)
    out_file = tmp_path / "123_4_0_log.out"
    task = ("import sys; from studies.config import read_file; from studies.launch import run_worker; "
            "c = read_file(sys.argv[1]); sys.exit(0 if run_worker(c.to_dict(), c.source) == 1 else 3)")
    env = cli_env(SLURM_JOB_ID="124", SLURM_ARRAY_JOB_ID="123", SLURM_ARRAY_TASK_ID="4")
    with out_file.open("w") as out:
        proc = subprocess.run([sys.executable, "-c", task, str(path)], stdout=out, stderr=subprocess.PIPE, text=True,
                              env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = out_file.read_text().splitlines()
    assert all(re.match(STAMP + " ", line) for line in lines), lines
    (name,) = _names(path, tmp_path).values()
    text = [line.split(" ", 1)[1] for line in lines]
    assert [t.split(" ")[:3] for t in text] == [["worker", f"{socket.gethostname()}", "slurm"],
                                                ["trial", "0", "start"], ["trial", "0", "epoch"],
                                                ["trial", "0", "epoch"], ["trial", "0", "end"],
                                                ["worker", f"{socket.gethostname()}", "slurm"]], text
    assert text[1].endswith(" slurm 123_4") and name in text[1] and name in text[2] and name in text[3]
    assert text[4].startswith(f"trial 0 end trained {name} top-1 ")


@pytest.mark.skipif(shutil.which("script") is None, reason="`script` (util-linux) is not installed: no pty to test")
def test_front_on_a_narrow_terminal_folds_names_and_never_cuts_them(tmp_path, synthetic, attnas_exe, cli_env):
    """In a terminal rich draws the table; a name wider than its column folds onto the next lines."""
    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    study = synthetic.make_study(synthetic.mixed(), storage=url, name="mixed")
    front = [r.name for r in records(study) if r.number in (0, 1)]  # the mixed study's front (test_records)
    command = f"stty cols 50; {attnas_exe[0]} front --storage {url} --study mixed"
    proc = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True, timeout=120,
                          env=cli_env(TERM="xterm"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shown = ANSI.sub("", proc.stdout).replace("\r", "")
    assert "┃" in shown and "…" not in shown  # rich's table, and nothing cut
    cells = "".join(line.split("│")[1].strip() for line in shown.splitlines() if line.startswith("│"))
    assert all(name in cells and len(name) > 30 for name in front), shown
    plain = subprocess.run([*attnas_exe, "front", "--storage", url, "--study", "mixed"], capture_output=True,
                           text=True, timeout=120, env=cli_env())
    assert [line.split()[0] for line in plain.stdout.splitlines()[3:5]] == front, plain.stdout


def test_terminal_progress_bar_names_the_architecture_and_epoch() -> None:
    """The progress view, drawn into a forced terminal: the bar's text is the trial, full name and epoch."""
    from rich.console import Console

    from studies.events import EpochEnded, TrialEnded, TrialStarted
    from studies.logs import progress_view

    name = "r50x0.5-c2:nl0.5k1add-c3:gc16add_att-c4:se16s-c5:none"
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=200)
    with progress_view(console, total=1, done=lambda: 0) as emit:
        emit(TrialStarted(7, name, 1.5, 1_000_000, 2))
        emit(EpochEnded(7, name, 2, 2, 0, 1, 0.5, 0.9, 100.0, 3.0, 0.0))
        emit(TrialEnded(7, name, "trained", 0.9, 0.01, 3.2, 2))
    shown = ANSI.sub("", screen.getvalue())
    assert f"trial 7 {name} epoch 2/2" in shown
    assert f"trial 7 end trained {name} top-1 90.0% ± 1.0 pts in 3.2s" in shown


def test_retries_and_every_seed_get_their_events(tiny_study, tmp_path, monkeypatch) -> None:
    """A stale trial's retry is an event and its start names the trial it retries; with `seeds = 2` both seeds'
    epochs are events (the ETA counts the second seed), though early stopping only watches the first."""
    import time

    from studies import storage as st
    from studies.config import read_file
    from studies.liveness import HEARTBEAT_ATTR
    from studies.logs import plain_line
    from studies.worker import Hooks, start, work

    monkeypatch.chdir(tmp_path)
    path = tiny_study(f"journal://{tmp_path}/s.log", trials=1, epochs=2)
    path.write_text(path.read_text().replace("batch_size = 32", "batch_size = 32\nseeds = 2"))
    ctx, study = start(read_file(path))
    dead = ctx.liveness.claim(study)  # a worker that claimed the only slot, beat once long ago and died
    ctx.storage.set_trial_system_attr(dead._trial_id, HEARTBEAT_ATTR, time.time() - 10_000)
    seen: list = []
    stats = work(ctx, study, Hooks.every(seen.append))
    assert stats.ran == 1 and stats.failed == 0
    kinds = [type(e).__name__ for e in seen]
    assert kinds == ["TrialRetried", "TrialStarted"] + ["EpochEnded"] * 4 + ["TrialEnded"], kinds
    retried, started, *epochs, ended = seen
    assert retried.trial == dead.number and started.retry_of == dead.number and started.seeds == 2
    assert [(e.run, e.epoch) for e in epochs] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert epochs[1].eta_s > 0 and epochs[-1].eta_s == 0  # after seed 1's last epoch, seed 2 is still to come
    assert ended.outcome == "trained" and ended.se is not None
    assert plain_line(retried).endswith(f"trial {dead.number} retry: no heartbeat for over {st.GRACE_S:g}s "
                                        "(its worker died or hung); failed and queued again")
    assert f"retry of trial {dead.number}" in plain_line(started) and " seed 2/2 " in plain_line(epochs[2])


def test_a_log_that_cannot_be_written_never_stops_the_worker() -> None:
    from studies.events import TrialRetried
    from studies.logs import Lines

    closed = io.StringIO()
    closed.close()
    Lines(closed, "json")(TrialRetried(3, 90.0))  # a closed stream: the line is lost, nothing raised

    class Full(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    Lines(Full(), "plain")(TrialRetried(3, 90.0))


def test_failed_trials_and_the_error_that_stops_a_worker_are_logged(tiny_study, tmp_path, monkeypatch) -> None:
    """Three trials in a row that raise stop the worker: each is a `failed` end naming its error, and the
    worker's last line says what it ran and which error stopped it."""
    from dataclasses import replace

    from studies.config import StudyError, read_file
    from studies.logs import Lines, work_logged
    from studies.worker import start

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: out of memory")

    monkeypatch.chdir(tmp_path)
    ctx, study = start(read_file(tiny_study(trials=3, kinds='["none", "se", "gc"]')), join=True)
    log = io.StringIO()
    with pytest.raises(StudyError, match="3 trials in a row failed"):
        work_logged(replace(ctx, train=broken), study, Lines(log, "json"))
    events = [json.loads(line) for line in log.getvalue().splitlines()]
    ends = [e for e in events if e["event"] == "trial_end"]
    assert [(e["trial"], e["outcome"]) for e in ends] == [(0, "failed"), (1, "failed"), (2, "failed")]
    assert all(e["error"] == f"trial {e['trial']}: RuntimeError: CUDA error: out of memory" and e["name"]
               for e in ends)
    last = events[-1]
    assert (last["event"], last["ran"], last["failed"]) == ("worker_end", 3, 3)
    assert last["error"].startswith("StudyError: 3 trials in a row failed in this worker (last: trial 2: RuntimeError")
