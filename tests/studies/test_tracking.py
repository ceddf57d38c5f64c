"""Per-trial wandb runs: offline runs carry the right group, config and summary; 'disabled' is a no-op.

wandb 0.31 offline writes only `run-<id>.wandb` (no config.yaml / wandb-summary.json) and ships no
Python reader for it, so `read_records` parses the file itself: a LevelDB-style log (7-byte ':W&B'
header, 32 KiB blocks, 7-byte chunk headers) of `wandb_internal_pb2.Record` protobufs.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from studies.tracking import open_run

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@pytest.fixture(autouse=True)
def offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}.items():
        monkeypatch.setenv(key, value)
    return tmp_path


def read_records(path: Path) -> Iterator[Any]:
    """Yield the protobuf records of a `.wandb` transaction log, reassembling chunked ones."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a wandb transaction log"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a chunk header never straddles a block: the tail is padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:
            break
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def key_of(item: Any) -> str:
    return item.key or ".".join(item.nested_key)


def finished_records(run_dir: Path, timeout: float = 20.0) -> list[Any]:
    """The run's records once its exit record is on disk.

    `run.finish()` returns before wandb's service process has flushed the log (about 1 run in 5 here
    was still incomplete right after it), so wait for the exit record rather than read a partial file.
    """
    deadline = time.monotonic() + timeout
    while True:
        records = [r for log in run_dir.glob("run-*.wandb") for r in read_records(log)]
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def run_contents(run_dir: Path) -> dict[str, Any]:
    """The run's group, name, config, final summary, history rows and exit code, as wandb recorded them."""
    out: dict[str, Any] = {"summary": {}, "history": []}
    for record in finished_records(run_dir):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["group"], out["name"] = record.run.run_group, record.run.display_name
            out["config"] = {i.key: json.loads(i.value_json) for i in record.run.config.update}
        elif kind == "summary":
            out["summary"].update({key_of(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "history":
            out["history"].append({key_of(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


CONFIG = {
    "study": "s1",
    "trial": 3,
    "params": {"c2.kind": "se", "c5.kind": "nl"},
    "spec": {"backbone": "resnet50", "width": 1.0, "stages": {"c2": {"kind": "se", "ratio": 16}}},
    "constraints": {"gflops_budget": -0.25},
}


def test_offline_run_records_group_config_epochs_and_summary(offline_wandb: Path) -> None:
    started = time.perf_counter()
    run = open_run(project="attnas-test", mode="offline", group="s1", name="trial-3", config=CONFIG)
    print(f"wandb.init took {time.perf_counter() - started:.2f} s")
    run.log_epoch(0, {"train_loss": 2.5, "top1": 0.31})
    run.log_epoch(1, {"train_loss": 1.5, "top1": 0.52})
    run.finish({"top1": 0.52, "gflops": 4.35, "feasible": True})
    contents = run_contents(run.directory)  # type: ignore[arg-type]
    assert run.directory.parent == offline_wandb / "wandb"  # type: ignore[union-attr]
    assert (contents["group"], contents["name"]) == ("s1", "trial-3")
    assert {k: v for k, v in contents["config"].items() if k != "_wandb"} == CONFIG
    assert {k: contents["summary"][k] for k in ("top1", "gflops", "feasible", "failed")} == {
        "top1": 0.52, "gflops": 4.35, "feasible": True, "failed": False,
    }
    assert [(h["epoch"], h["top1"], h["_step"]) for h in contents["history"]] == [(0, 0.31, 0), (1, 0.52, 1)]
    assert contents["exit_code"] == 0


def test_failed_trial_exits_non_zero_and_context_manager_finishes(offline_wandb: Path) -> None:
    with pytest.raises(RuntimeError), open_run(
        project=None, mode="offline", group="s1", name="trial-4", config={"trial": 4}, dir=str(offline_wandb / "x")
    ) as run:
        raise RuntimeError("loss diverged")
    assert run.directory is not None and run.directory.parent == offline_wandb / "x" / "wandb"
    contents = run_contents(run.directory)
    assert contents["exit_code"] == 1
    assert contents["summary"]["failed"] is True
    assert contents["summary"]["error"] == "RuntimeError: loss diverged"
    run.finish({"top1": 0.1})  # a second finish on an error path is harmless


def test_disabled_mode_imports_nothing_and_writes_nothing(offline_wandb: Path) -> None:
    code = (
        "import sys; from studies.tracking import open_run\n"
        "run = open_run(project='p', mode='disabled', group='g', name='n', config={'a': 1})\n"
        "run.log_epoch(0, {'top1': 0.5}); run.finish({'top1': 0.5}, failed=True)\n"
        "assert not run.enabled and run.directory is None\n"
        "assert 'wandb' not in sys.modules, 'disabled mode imported wandb'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=os.environ, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert list(offline_wandb.iterdir()) == []


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="not one of online, offline, disabled"):
        open_run(project=None, mode="dryrun", group="g", name="n", config={})
