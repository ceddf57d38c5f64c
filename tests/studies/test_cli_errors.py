"""Every mistake is one line: a table of bad invocations of `attnas`.

Each case asserts exactly one stderr line `error: ...`, no traceback, exit status 2 for a usage mistake
(missing/unknown/mistyped option or argument, unknown command or device) and 1 for anything else, and a
needle naming the option or path. REAL cases run the installed console script (each kind of mistake, the
devices); the rest run the console script's own `studies.cli.main` in this process (the same code path,
torch imported once), which keeps the table well under a minute on a busy 2-core machine.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from studies.cli.app import error_line, failed_trial_lines, require_success
from studies.config import StudyError

USAGE, RUNTIME = 2, 1
SPEC = '{"backbone": "resnet18", "stages": {"c4": {"kind": "se", "ratio": 16}}}'
BAD_FILES = {
    "zero.toml": 'name = "x"\ntrials = 0\n',
    "typo.toml": 'name = "x"\ntrails = 3\n',
    "syntax.toml": 'name = "x"\ntrials = [\n',
    "device.toml": 'name = "x"\ndevice = "tpu"\n',
    "study.json": '{"name": "x"}',
}

# (arguments, exit status, needles); {d} is a folder holding spec.json, data/, exists.toml and BAD_FILES.
REAL = [
    (["pick", "{d}/zero.toml"], USAGE, ["--max-gflops", "add it", "attnas pick --help"]),
    (["search"], USAGE, ["study_file", "attnas search --help"]),
    (["pick", "{d}/zero.toml", "--max-gflops", "abc"], USAGE, ["--max-gflops", "valid number"]),
    (["create", "{d}/zero.toml", "--trials", "abc"], USAGE, ["--trials", "valid integer"]),
    (["status", "--bogus"], USAGE, ["--bogus", "check its spelling"]),
    (["frob"], USAGE, ["frob", "attnas --help"]),
    (["train", "{d}/spec.json"], USAGE, ["--data", "--study FILE"]),
    # devices: a typo is a usage mistake, a missing GPU is not
    (["train", "{d}/spec.json", "--data", "{d}/data", "--device", "tpu"], USAGE, ["--device", "cpu|cuda|auto"]),
    (["init", "{d}/exists.toml"], RUNTIME, ["exists.toml", "--force"]),
    (["status", "--storage", "ftp://host/x", "--study", "x"], RUNTIME, ["ftp://host/x", "sqlite:///"]),
]
IN_PROCESS = [
    (["train", "{d}/spec.json", "--data", "{d}/data", "--device", "cuda"], RUNTIME,
     ["CUDA requested but torch.cuda.is_available() is False", "--device cpu or auto"]),
    (["create", "--trials", "3"], USAGE, ["study_file"]),
    (["flops"], USAGE, ["spec", "attnas flops --help"]),
    (["report", "--out"], USAGE, ["--out", "requires an argument"]),
    (["worker", "{d}/zero.toml", "--trials", "1.5"], USAGE, ["--trials"]),
    (["flops", "r50-c2:none-c3:none-c4:none-c5:none", "--resolution", "-3"], USAGE, ["--resolution", "16"]),
    (["train", "{d}/spec.json", "--data", "{d}/data", "--epochs", "0"], USAGE, ["--epochs"]),
    (["train", "{d}/spec.json", "--data", "{d}/data", "--lr", "-1"], USAGE, ["--lr", "positive"]),
    (["train", "{d}/spec.json", "--study", "{d}/zero.toml", "--resolution", "big"], USAGE, ["--resolution"]),
    (["dashboard", "--port", "http"], USAGE, ["--port"]),
    (["launch", "{d}/zero.toml", "--workers", "four"], USAGE, ["--workers"]),
    (["front", "--studdy", "x"], USAGE, ["--studdy", "--study"]),
    (["search", "{d}/zero.toml", "--trails", "3"], USAGE, ["--trails", "--trials"]),
    (["create", "{d}/zero.toml"], RUNTIME, ["zero.toml", "trials"]),
    (["create", "{d}/typo.toml"], RUNTIME, ["trails", "not a known setting"]),
    (["search", "{d}/syntax.toml"], RUNTIME, ["syntax.toml", "not valid TOML"]),
    (["worker", "{d}/device.toml"], RUNTIME, ["device", "tpu"]),
    (["create", "{d}/study.json"], RUNTIME, ["study.json", ".toml"]),
    (["search", "{d}/missing.toml"], RUNTIME, ["missing.toml", "attnas init"]),
    (["train", "{d}/spec.json", "--study", "{d}/missing.toml"], RUNTIME, ["missing.toml", "attnas init"]),
    (["train", "{d}/missing.json", "--data", "{d}/data"], RUNTIME, ["missing.json", "attnas pick"]),
    (["train", "{d}/spec.json", "--data", "{d}/no-data"], RUNTIME, ["--data", "no-data", "does not exist"]),
    (["flops", "r50-c2:none"], RUNTIME, ["spec name", "one entry per stage"]),
    (["flops", "{d}/missing.json"], RUNTIME, ["missing.json", "does not exist"]),
]


def one_line(proc: subprocess.CompletedProcess, code: int, needles: list[str]) -> str:
    """The single `error:` line of a failed command, checked for exit status, traceback and needles."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr and "s3cret" not in proc.stderr + proc.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli-errors")
    (d / "spec.json").write_text(SPEC)
    (d / "data").mkdir()
    (d / "exists.toml").write_text("# mine\n")
    for name, text in BAD_FILES.items():
        (d / name).write_text(text)
    return d


def nothing_changed(folder: Path) -> bool:
    """No file overwritten, no storage or .attnas folder created next to the inputs."""
    return ((folder / "exists.toml").read_text() == "# mine\n" and not list(folder.glob("*.db"))
            and not (folder / ".attnas").exists())


def test_the_table_is_big_enough() -> None:
    assert len(REAL) + len(IN_PROCESS) >= 30


@pytest.mark.parametrize(("args", "code", "needles"), REAL, ids=[" ".join(c[0])[:50] for c in REAL])
def test_bad_invocation_is_one_line(args: list[str], code: int, needles: list[str], folder: Path, attnas) -> None:
    one_line(attnas(*(a.format(d=folder) for a in args), cwd=folder), code, needles)
    assert nothing_changed(folder)


@pytest.mark.parametrize(("args", "code", "needles"), IN_PROCESS, ids=[" ".join(c[0])[:50] for c in IN_PROCESS])
def test_bad_invocation_in_process(args: list[str], code: int, needles: list[str], folder: Path, attnas_here,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(folder)
    one_line(attnas_here(*(a.format(d=folder) for a in args)), code, needles)
    assert nothing_changed(folder)


def test_unreachable_database_is_one_masked_line(attnas_here) -> None:
    one_line(attnas_here("status", "--storage", "postgresql://bob:s3cret@127.0.0.1:1/db", "--study", "x"),
             RUNTIME, ["bob:***@127.0.0.1:1", "database server"])


@pytest.mark.parametrize(("command", "storage"), [(["status"], "s.db"), (["front"], "s.log"),
                                                (["pick", "--max-gflops", "5"], "s.log"), (["report"], "s.db")])
def test_read_commands_on_missing_storage_create_nothing(command: list[str], storage: str, tmp_path: Path,
                                                         attnas) -> None:
    path = tmp_path / "sub" / storage
    line = one_line(attnas(*command, "--storage", str(path), "--study", "s", cwd=tmp_path), RUNTIME, [str(path)])
    assert "attnas create" in line
    assert list(tmp_path.iterdir()) == []  # no storage file, no folder for it, no report, no spec JSON


def test_unwritable_out_names_the_path(tiny_study, tmp_path: Path, attnas_here) -> None:
    """A study file whose storage is missing creates nothing; an unwritable --out names the path."""
    path = tiny_study(storage=f"sqlite:///{tmp_path}/store/s.db")
    one_line(attnas_here("status", str(path)), RUNTIME, [f"{tmp_path}/store/s.db"])
    assert not (tmp_path / "store").exists()
    assert attnas_here("create", str(path)).returncode == 0
    one_line(attnas_here("report", str(path), "--out", "/proc/x.html"), RUNTIME, ["/proc/x.html"])
    if os.geteuid() == 0:  # root may write anywhere but /sys
        one_line(attnas_here("report", str(path), "--out", "/sys/x.html"), RUNTIME,
                 ["/sys/x.html", "permission denied"])


@pytest.fixture
def full_disk(tmpfs):
    """A 256 KiB tmpfs filled to the last block (root only: skips elsewhere)."""
    mount = tmpfs("full", "size=256k")
    fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
    with pytest.raises(OSError) as exc:
        while True:
            os.write(fd, b"\0" * 4096)
    os.close(fd)
    assert exc.value.errno == errno.ENOSPC
    return mount


def test_full_disk_report_is_one_line(full_disk: Path, tiny_study, attnas_here) -> None:
    path = tiny_study()
    assert attnas_here("create", str(path)).returncode == 0
    one_line(attnas_here("report", str(path), "--out", str(full_disk / "r.html")), RUNTIME, ["disk full"])


@pytest.mark.slow
def test_full_disk_checkpoint_is_one_line(full_disk: Path, tiny_study, tmp_path: Path, attnas) -> None:
    """torch.save of a checkpoint on a full disk, in a real process: one line naming the run folder, exit 1."""
    spec = tmp_path / "spec.json"
    spec.write_text(SPEC)
    proc = attnas("train", str(spec), "--study", str(tiny_study()), "--images-per-class", "2", "--json",
                  "--runs", str(full_disk / "runs"))
    line = one_line(proc, RUNTIME, [str(full_disk / "runs"), "--runs"])
    assert "space" in line and proc.stdout == ""


def test_debug_shows_the_traceback(folder: Path, attnas) -> None:
    proc = attnas("pick", str(folder / "zero.toml"), "--max-gflops", "abc", ATTNAS_DEBUG="1")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_error_line_kinds() -> None:
    """The catch-all, OS errors with and without a path, and password masking."""
    line, code = error_line(KeyError("boom"))
    assert (code, line) == (RUNTIME, "KeyError: 'boom' (run with ATTNAS_DEBUG=1 for the traceback)")
    line, _ = error_line(PermissionError(errno.EACCES, "Permission denied", "/x/out.html"))
    assert line == "cannot write /x/out.html: permission denied; make it writable or choose another path"
    line, _ = error_line(OSError(errno.EROFS, "Read-only file system", "/ro/a"))
    assert "/ro/a" in line and "read-only" in line
    torch_like = RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    torch_like.__context__ = OSError(errno.ENOSPC, "No space left on device", "/full/ckpt.pt")
    assert error_line(torch_like)[0] == "cannot write /full/ckpt.pt: disk full; free some space or write somewhere else"
    line, _ = error_line(StudyError("cannot open postgresql://u:pw@h/db\n(details)"))
    assert line == "cannot open postgresql://u:***@h/db (details)"


def test_failed_trials_are_listed_and_no_success_is_an_error() -> None:
    study = optuna.create_study(study_name="f", directions=["maximize", "minimize"])
    for message in ("DataError: class x has 1 image", "RuntimeError: boom\nline two"):
        study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"error": message}))
    assert failed_trial_lines(study) == ["trial 0 failed: DataError: class x has 1 image",
                                         "trial 1 failed: RuntimeError: boom line two"]
    with pytest.raises(StudyError, match=r"no trial of study 'f' succeeded \(2 of 2 failed; trial 0 failed: Data"):
        require_success(study)
    study.add_trial(create_trial(state=TrialState.COMPLETE, values=[0.5, 1.0]))
    require_success(study)  # one success is enough
