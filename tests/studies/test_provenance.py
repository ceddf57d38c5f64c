"""How a study was made: each worker's environment, the data summary, the report's run section, `attnas export`."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest
import torch

from studies import queue
from studies import storage as st
from studies.config import from_dict
from studies.environment import environment, git_state, source_root
from studies.provenance import random_baseline
from studies.records import environments, records, setups
from studies.report import report_html, study_report_data
from studies.worker import warn_mixed

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_environment_names_versions_commit_device_and_threads() -> None:
    env = environment("cpu", worker=3)
    assert (env["worker"], env["device"], env["torch"], env["optuna"]) == (3, "cpu", torch.__version__,
                                                                           optuna.__version__)
    assert env["threads"] == torch.get_num_threads() and env["host"] and env["started"] and env["python"]
    # the kernels' instruction set: what the same CPU model name can hide, and what two fronts differ on
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and env["cpu_capability"]
    if (source_root() / ".git").exists() and shutil.which("git"):
        head = subprocess.run(["git", "-C", str(source_root()), "rev-parse", "HEAD"], capture_output=True, text=True)
        assert env["commit"] == head.stdout.strip()


def test_git_state_is_none_without_a_checkout_or_without_git(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    assert git_state(tmp_path) == (None, None)  # no .git: not a checkout
    (tmp_path / ".git").mkdir()
    assert git_state(tmp_path) == (None, None)  # a broken checkout: git fails, the worker goes on
    monkeypatch.setenv("PATH", str(tmp_path))  # no git at all
    assert git_state(source_root()) == (None, None)


def journal_study(tmp_path: Path) -> tuple[st.StorageInfo, optuna.storages.BaseStorage, optuna.Study]:
    info = st.parse(f"journal:///{tmp_path}/study.log")
    storage = st.open_storage(info)
    return info, storage, optuna.create_study(study_name="envs", storage=storage, directions=["maximize"])


def test_join_stores_each_environment_in_one_append_and_a_mixed_worker_warns_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    info, storage, study = journal_study(tmp_path)
    appends: list[int] = []
    append = storage._backend.append_logs
    monkeypatch.setattr(storage._backend, "append_logs", lambda logs: (appends.append(len(logs)), append(logs)))
    first = environment("cpu")
    assert queue.join(info, storage, study, first) == 0
    assert appends == [2]  # the worker count and its environment: two records, one append (one lock, one fsync)
    with caplog.at_level(logging.WARNING, logger="studies.worker"):
        warn_mixed(study, 0)
        assert queue.join(info, storage, study, {**first, "host": "other"}) == 1
        warn_mixed(study, 1)  # another host, same versions and device type: nothing to say
        assert queue.join(info, storage, study, {**first, "torch": "0.0.1", "device": "cuda"}) == 2
        warn_mixed(study, 2)
    assert len(caplog.records) == 1
    line = caplog.records[0].getMessage()
    assert "\n" not in line and "worker 2" in line and "torch 0.0.1" in line and "device cuda" in line

    reread = optuna.load_study(study_name="envs", storage=st.open_storage(info))  # another process's view
    envs = environments(reread)
    assert [e["worker"] for e in envs] == [0, 1, 2] and envs[0] == {**first, "worker": 0}
    summary = setups(envs)
    assert summary["workers"] == 3 and summary["mixed"] == ["torch", "device"]
    assert [row["workers"] for row in summary["rows"]] == [[0, 1], [2]]
    assert summary["rows"][0]["hosts"] == [first["host"], "other"]


def config_dict(name: str, sampler: str = "tpe", epochs: int = 2) -> dict:
    return {"name": name, "trials": 12, "data": {"train_per_class": 20, "holdout_per_class": 5},
            "schedule": {"epochs": epochs, "seeds": 2}, "sampler": {"name": sampler, "seed": 7}}


def test_report_says_how_the_study_was_run(synthetic) -> None:
    storage = optuna.storages.InMemoryStorage()
    study = synthetic.make_study(synthetic.mixed(), storage=storage, name="main")
    study.set_user_attr("attnas.config", from_dict(config_dict("main")).to_dict())
    study.set_user_attr("attnas.data", {"classes": 10, "train_images": 200, "holdout_images": 50})
    sid = study._study_id
    storage.set_study_system_attr(sid, "attnas:env:0", {**environment("cpu"), "worker": 0})
    storage.set_study_system_attr(sid, "attnas:env:1", {**environment("cpu"), "worker": 1, "torch": "9.9"})
    data = study_report_data(study)
    run = data["run"]
    rs = records(study)
    assert run["counts"] == data["counts"] and run["planned"] == 12
    trained = [r for r in rs if r.status.value in ("trained", "stopped", "diverged")]
    assert run["compute"] == {"trials": len(trained), "seconds": sum(r.seconds or 0 for r in trained),
                              "epochs": sum(r.epochs for r in trained)}
    assert run["space"]["size"] == from_dict(config_dict("main")).space.size()
    assert (run["budget"]["epochs"], run["budget"]["seeds"], run["budget"]["holdout_images"]) == (2, 2, 50)
    assert run["sampler"] == {"name": "tpe", "seed": 7, "startup_trials": None, "workers": 2}
    assert run["fidelity"] is None and run["random_baseline"] is None
    assert run["environment"]["mixed"] == ["torch"] and data["front_noise"]["holdout_images"] == 50
    page = report_html(data)
    assert "How this study was run" in page and "Workers differ in torch" in page
    assert "Random-sampler comparison: not run" in page and "50 held-out images of 10 classes" in page
    assert json.loads(json.dumps(data))["run"] == run  # what `attnas report --json` prints


def test_a_random_sampler_twin_in_the_same_storage_is_the_baseline(synthetic) -> None:
    storage = optuna.storages.InMemoryStorage()
    main = synthetic.make_study(synthetic.records(8, seed=1), storage=storage, name="main")
    main.set_user_attr("attnas.config", from_dict(config_dict("main")).to_dict())
    other = synthetic.make_study(synthetic.records(8, seed=2), storage=storage, name="other-epochs")
    other.set_user_attr("attnas.config", from_dict(config_dict("other-epochs", "random", epochs=3)).to_dict())
    assert random_baseline(main, st.stored_config(main)) is None  # another schedule: not comparable
    twin = synthetic.make_study(synthetic.records(6, seed=3), storage=storage, name="twin")
    twin.set_user_attr("attnas.config", from_dict(config_dict("twin", "random")).to_dict())
    found = study_report_data(main)["run"]["random_baseline"]
    assert found["study"] == "twin" and (found["trials"], found["this_trials"]) == (6, 8)
    assert found["hypervolume"] > 0 and found["this_hypervolume"] > 0
    assert random_baseline(twin, st.stored_config(twin)) is None  # a random study has no random baseline


TREE_STUDY = """
name = "{name}"
storage = "sqlite:///{db}"
trials = 2
device = "cpu"

[space]
backbones = ["resnet18"]
kinds = ["none", "se"]
ratios = [16]
fusions = ["scale"]

[data]
root = "{root}"
train_per_class = 12
holdout_per_class = 4
resolution = 16

[schedule]
epochs = 1
batch_size = 32
width_mult = 0.125
amp = false
channels_last = false

[sampler]
name = "random"
seed = 0
"""


def test_export_round_trip_and_reads_without_the_data(tmp_path: Path, attnas_cache: Path, attnas,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A study on an ImageFolder tree: export it, re-create it from the folder, then delete the data and read."""
    from typer.testing import CliRunner

    from studies.cli import app
    from trainer import write_digits_tree

    monkeypatch.setenv("ATTNAS_CACHE", str(attnas_cache))
    root = write_digits_tree(tmp_path / "tree")
    path = tmp_path / "exp.toml"
    path.write_text(TREE_STUDY.format(name="exp", db=tmp_path / "exp.db", root=root))
    searched = attnas("search", str(path), cwd=tmp_path, timeout=300)
    assert searched.returncode == 0, searched.stderr
    cli = CliRunner()

    folder = tmp_path / "export"
    done = cli.invoke(app, ["export", str(path), str(folder)])
    assert done.exit_code == 0 and "2 trial record(s)" in done.stdout, done.output
    study = st.load(st.open_storage(st.parse(f"sqlite:///{tmp_path / 'exp.db'}")), "exp")
    lines = [json.loads(line) for line in (folder / "trials.jsonl").read_text().splitlines()]
    assert lines == [json.loads(json.dumps(r.to_dict())) for r in records(study)]  # = `attnas front --json` rows
    front = json.loads(cli.invoke(app, ["front", str(path), "--json"]).stdout)
    assert front and all(r in lines for r in front)
    assert {p.stem for p in (folder / "specs").iterdir()} == {r["spec_id"] for r in lines}
    env = json.loads((folder / "environment.json").read_text())
    assert [w["worker"] for w in env["workers"]] == [0] and env["data"]["holdout_images"] == 40
    assert "How this study was run" in (folder / "report.html").read_text()

    again = attnas("export", str(path), str(folder))  # a non-empty folder: one line, nothing written
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "--force" in again.stderr
    forced = cli.invoke(app, ["export", "--storage", f"sqlite:///{tmp_path / 'exp.db'}", "--study", "exp",
                              str(folder), "--force"])
    assert forced.exit_code == 0, forced.output

    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"  # the exported study file re-creates the study elsewhere
    monkeypatch.chdir(tmp_path)
    created = cli.invoke(app, ["create", str(folder / "study.yaml"), "--storage", fresh])
    assert created.exit_code == 0, created.output
    recreated = st.load(st.open_storage(st.parse(fresh)), "exp")
    assert st.stored_config(recreated).identity() == st.stored_config(study).identity()

    shutil.rmtree(root)  # reads never touch the data: the front keeps its ± and status shows the environment
    shown = cli.invoke(app, ["front", str(path)])
    assert shown.exit_code == 0 and re.search(r"\d+\.\d%\s+│?\s*\d+\.\d\s", shown.stdout), shown.stdout  # a ± column
    status = cli.invoke(app, ["status", str(path)])
    assert status.exit_code == 0 and "environment of 1 worker(s)" in status.stdout
    assert "budget: none\n" in status.stdout  # no max_gflops: no unit after "none"
    assert torch.__version__ in status.stdout


def test_the_data_summary_is_stored_once_and_other_data_warns(caplog: pytest.LogCaptureFixture) -> None:
    from studies.worker import store_data
    from trainer import SubsetCheck

    study = optuna.create_study()
    seen = SubsetCheck("/data", ("a", "b"), train_images=20, holdout_images=8, images_checked=4)
    store_data(study, seen)
    assert study.user_attrs["attnas.data"] == {"classes": 2, "train_images": 20, "holdout_images": 8}
    with caplog.at_level(logging.WARNING, logger="studies.worker"):
        store_data(study, seen)
        assert not caplog.records
        store_data(study, SubsetCheck("/data", ("a",), 10, 4, 2))  # a node missing a class folder
    assert len(caplog.records) == 1 and "/data" in caplog.records[0].getMessage()
    assert study.user_attrs["attnas.data"]["holdout_images"] == 8  # the study's own is kept
