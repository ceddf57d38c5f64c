"""The `attnas` command through the real console script: one-line errors, no traceback, study untouched."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import optuna
import pytest


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ('name = "x"\ntrials = 0\n', ["trials", "greater than or equal to 1"]),
        ('name = "x"\n[sampler]\nname = "cmaes"\n', ["sampler.name", "tpe"]),
        ('name = "x"\ntrails = 3\n', ["trails", "not a known setting"]),
        ('trials = 3\n', ["name", "required"]),
        ('name = "x"\n[space]\nkinds = ["sx"]\n', ["space.kinds", "sx"]),
        ('name = "x"\ntrials = [\n', ["not valid TOML"]),
    ],
)
def test_bad_study_file_is_one_line(tmp_path: Path, text: str, needles: list[str], attnas) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert_one_line_error(attnas("create", str(path), "--storage", f"sqlite:///{tmp_path}/x.db"), *needles)
    assert not (tmp_path / "x.db").exists() or not optuna.get_all_study_names(f"sqlite:///{tmp_path}/x.db")


def test_bad_yaml_and_missing_file(tmp_path: Path, attnas) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [x\n")
    assert_one_line_error(attnas("create", str(bad)), "not valid YAML")
    assert_one_line_error(attnas("create", str(tmp_path / "nope.toml")), "does not exist", "attnas init")


def test_unreachable_database_masks_the_password(tiny_study, attnas) -> None:
    path = tiny_study("postgresql://bob:s3cret@127.0.0.1:1/nodb")
    line = assert_one_line_error(attnas("create", str(path)), "cannot open storage", "bob:***@127.0.0.1:1")
    assert "s3cret" not in line
    line = assert_one_line_error(attnas("status", "--storage", "postgresql://bob:s3cret@127.0.0.1:1/x",
                                        "--study", "x"))
    assert "s3cret" not in line


def test_missing_dataset_and_changed_space_leave_the_study_untouched(tiny_study, tmp_path: Path, attnas) -> None:
    path = tiny_study(trials=2)
    proc = attnas("create", str(path))
    assert proc.returncode == 0, proc.stderr
    storage = f"sqlite:///{tmp_path}/{path.stem}.db"
    before = optuna.load_study(study_name=path.stem, storage=storage)
    attrs, n = before.user_attrs, len(before.trials)

    changed = path.with_name("changed.toml")
    changed.write_text(path.read_text().replace('kinds = ["none", "se"]', 'kinds = ["none", "gc"]'))
    assert_one_line_error(attnas("create", str(changed)), "different `space`", "new `name`")
    missing = path.with_name("missing.toml")
    missing.write_text(path.read_text().replace('root = "digits"', f'root = "{tmp_path}/no-such-dir"'))
    assert_one_line_error(attnas("worker", str(missing)), "data.root", "does not exist")

    after = optuna.load_study(study_name=path.stem, storage=storage)
    assert after.user_attrs == attrs and len(after.trials) == n
    assert all(t.state == optuna.trial.TrialState.WAITING for t in after.trials)


def test_search_front_pick_and_optuna_cli(tiny_study, tmp_path: Path, attnas_exe, attnas) -> None:
    """The laptop path end to end, read back by `attnas front/pick` and by the standard optuna CLI."""
    path = tiny_study(trials=3)
    report = tmp_path / "r.html"
    proc = attnas("search", str(path), "--no-wandb", "--report", str(report), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Pareto front" in proc.stdout and report.is_file()
    again = attnas("create", str(path))  # idempotent: resuming adds nothing
    assert again.returncode == 0 and "'COMPLETE': 3" in again.stdout, again.stdout

    front = json.loads(attnas("front", str(path), "--json").stdout)
    assert front and all(r["state"] == "COMPLETE" and r["feasible"] for r in front)
    out = tmp_path / "best.json"
    proc = attnas("pick", str(path), "--max-gflops", "100", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    from search_space import ArchSpec

    best = max(front, key=lambda r: r["top1"])
    assert ArchSpec.from_json(out.read_text()).name == best["name"] and "build_model" in proc.stdout
    assert_one_line_error(attnas("pick", str(path), "--max-gflops", "0.001"), "no architecture within")

    storage = f"sqlite:///{tmp_path}/{path.stem}.db"
    listed = subprocess.run([str(Path(attnas_exe[0]).parent / "optuna"), "trials", "--storage", storage,
                             "--study-name", path.stem, "-f", "json"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert len(rows) == 3 and all(r["state"] == "COMPLETE" and len(r["values"]) == 2 for r in rows)


def test_launch_dry_run_prints_the_sbatch_array(tiny_study, attnas) -> None:
    path = tiny_study()
    proc = attnas("launch", str(path), "--slurm", "--workers", "5", "--partition", "gpu", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --array=0-4%5" in proc.stdout and "#SBATCH --partition=gpu" in proc.stdout
    assert "SQLite" in proc.stderr  # the cluster warning for a sqlite storage


def test_digits_and_train_json(tmp_path: Path, attnas_cache: Path, monkeypatch: pytest.MonkeyPatch, attnas) -> None:
    """`attnas digits` + `attnas train --json`: one JSON object on stdout with the ProxyResult keys."""
    monkeypatch.setenv("ATTNAS_CACHE", str(attnas_cache))
    assert attnas("digits", str(tmp_path / "digits")).returncode == 0
    spec = tmp_path / "spec.json"
    spec.write_text('{"backbone": "resnet18", "stages": {"c4": {"kind": "se", "ratio": 16}}}')
    args = ["train", str(spec), "--data", str(tmp_path / "digits"), "--train-per-class", "10",
            "--holdout-per-class", "4", "--resolution", "16", "--epochs", "1", "--batch-size", "32",
            "--width-mult", "0.125", "--runs", str(tmp_path / "runs"), "--json"]
    proc = attnas(*args)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) == {"top1", "top5", "epochs", "seconds", "images_per_s", "status", "checkpoint"}
    assert result["epochs"] == 1 and 0.0 <= result["top1"] <= 1.0
    # --val: the finished run is resumed from its checkpoint (same metrics), then scored on val/
    proc = attnas(*args, "--val")
    assert proc.returncode == 0, proc.stderr
    final = json.loads(proc.stdout)
    same = ("top1", "top5", "epochs", "checkpoint")
    assert {k: final[k] for k in same} == {k: result[k] for k in same}
    assert final["val_images"] == len(list((tmp_path / "digits" / "val").glob("*/*.JPEG")))
    assert 0.0 <= final["val_top1"] <= final["val_top5"] <= 1.0
    assert Path(final["checkpoint"]).is_relative_to(tmp_path / "runs")
    assert_one_line_error(attnas("train", str(spec), "--data", str(tmp_path / "none")), "--data", "does not exist")


def test_flops_counts_a_spec_given_by_name_or_file(tmp_path: Path, attnas) -> None:
    plain = json.loads(attnas("flops", "r50-c2:none-c3:none-c4:none-c5:none", "--json").stdout)
    assert (plain["params"], plain["fvcore"], plain["fvcore_no_bn"]) == (25_557_032, 4_111_512_576, 4_089_284_608)
    spec = tmp_path / "gc.json"
    spec.write_text('{"backbone": "resnet50", "stages": {"c3": {"kind": "gc"}, "c4": {"kind": "gc"}, '
                    '"c5": {"kind": "gc"}}}')
    by_file = json.loads(attnas("flops", str(spec), "--json").stdout)
    assert by_file["params"] == 28_078_773  # the GC paper's 28.08M
    assert by_file["complete"] > by_file["fvcore"] > plain["fvcore"]
    by_name = json.loads(attnas("flops", by_file["name"], "--resolution", "112", "--json").stdout)
    assert {k: by_name[k] for k in ("name", "params")} == {k: by_file[k] for k in ("name", "params")}
    assert by_name["resolution"] == 112 and by_name["complete"] < by_file["complete"] / 3
    assert_one_line_error(attnas("flops", "r50-c2:none"), "spec name", "one entry per stage")
    assert_one_line_error(attnas("flops", str(tmp_path / "missing.json")), "does not exist")


def test_train_a_pick_with_its_study_settings(tiny_study, tmp_path: Path, attnas) -> None:
    """`attnas train --study`: the study's subset and schedule exactly (the checkpoint folder is keyed by
    them), then each override replacing only its own field."""
    from dataclasses import replace

    from search_space import ArchSpec
    from studies.config import read_file
    from trainer.checkpoint import FILE, run_dir

    path = tiny_study()
    config = read_file(path)
    spec = tmp_path / "pick.json"
    spec.write_text('{"backbone": "resnet18", "stages": {"c5": {"kind": "gc"}}}')
    runs = tmp_path / "runs"

    def checkpoint(subset, schedule) -> str:
        key = {"spec": ArchSpec.from_json(spec.read_text()).to_dict(), "subset": subset.to_dict(),
               "schedule": schedule.to_dict()}
        return str(run_dir(runs, key) / FILE)

    proc = attnas("train", str(spec), "--study", str(path), "--json", "--runs", str(runs))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["checkpoint"] == checkpoint(config.data.subset(), config.schedule)
    assert result["epochs"] == config.schedule.epochs == 1

    overrides = ["--epochs", "2", "--lr", "0.05", "--images-per-class", "4", "--resolution", "16", "--seed", "3",
                 "--no-augment", "--device", "auto"]
    proc = attnas("train", str(spec), "--study", str(path), *overrides, "--json", "--runs", str(runs))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    subset = replace(config.data.subset(), train_per_class=4, resolution=16)  # the study's held-out images
    schedule = replace(config.schedule, epochs=2, lr=0.05, seed=3, augment="none", flip=False)
    assert result["checkpoint"] == checkpoint(subset, schedule) and result["epochs"] == 2
    assert_one_line_error(attnas("train", str(spec), "--study", str(path), "--data", str(tmp_path / "none")),
                          "--data", "does not exist")
