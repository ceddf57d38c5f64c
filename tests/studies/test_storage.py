"""Storage URLs: one canonical absolute form per file, read-only opens that create nothing, SQLite's full or
read-only disk named as such, and plain `postgresql://` URLs that attnas, the optuna CLI and optuna-dashboard
all read (psycopg 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import pytest

from studies import storage as st
from studies.config import StudyError

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize(
    ("url", "kind", "relative"),
    [
        ("journal:////{tmp}/a/s.log", "journal", False),  # four slashes, as SQLite URLs spell absolute paths
        ("journal:///{tmp}/a/s.log", "journal", False),
        ("journal://a/s.log", "journal", True),
        ("a/s.log", "journal", True),
        ("/{tmp}/a/s.log", "journal", False),
        ("journal:////{tmp}//a/./s.log", "journal", False),
        ("sqlite:////{tmp}/a/s.db", "sqlite", False),
        ("sqlite:///a/s.db", "sqlite", True),
        ("a/s.db", "sqlite", True),
        ("./a/../a/s.db", "sqlite", True),
    ],
)
def test_every_spelling_of_a_file_is_one_absolute_path(url: str, kind: str, relative: bool, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    info = st.parse(url.format(tmp=str(tmp_path).lstrip("/")) if not relative else url)
    expected = tmp_path / "a" / ("s.log" if kind == "journal" else "s.db")
    assert (info.kind, info.path) == (kind, expected)
    assert info.url == (str(expected) if kind == "journal" else f"sqlite:///{expected}")
    assert st.parse(info.url if kind == "sqlite" else f"journal://{info.url}") == info  # canonical is a fixpoint


@pytest.mark.parametrize("url", ["journal:", "journal:///", "sqlite://", "sqlite:///", "sqlite:///:memory:"])
def test_file_urls_without_a_file_are_refused(url: str) -> None:
    with pytest.raises(StudyError, match="storage: "):
        st.parse(url)


def test_plain_postgresql_urls_are_given_to_sqlalchemy_unchanged() -> None:
    for url in ("postgresql://u:p@h:5432/db", "postgresql+psycopg://u@h/db", "mysql://u@h/db"):
        assert st.parse(url) == st.StorageInfo("rdb", url, None)
    assert st.parse("postgres://u@h/db").url == "postgresql://u@h/db"  # the alias SQLAlchemy dropped


def test_four_slash_journal_stores_trial_artifacts(tmp_path: Path) -> None:
    """`journal:////abs` used to make every trial fail with "Invalid artifact_id" (a `//abs` base path)."""
    from optuna.artifacts import FileSystemArtifactStore, download_artifact, upload_artifact

    info = st.parse(f"journal:///{tmp_path}/s.log")
    study = optuna.create_study(study_name="s", storage=st.open_storage(info))
    trial = study.ask()
    spec = tmp_path / "spec.json"
    spec.write_text('{"x": 1}')
    folder = st.artifact_dir(None, info)
    folder.mkdir()
    store = FileSystemArtifactStore(str(folder))
    artifact = upload_artifact(artifact_store=store, file_path=str(spec), study_or_trial=trial)
    download_artifact(artifact_store=store, artifact_id=artifact, file_path=str(tmp_path / "back.json"))
    assert (tmp_path / "back.json").read_text() == '{"x": 1}' and folder == tmp_path / "s-artifacts"


@pytest.mark.parametrize("url", ["study.log", "journal://sub/dir/study.log", "study.db", "sqlite:///sub/dir/s.db"])
def test_read_only_open_of_a_missing_file_creates_nothing(url: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    info = st.parse(url)
    with pytest.raises(StudyError) as exc:
        st.open_existing(info)
    assert str(exc.value) == f"no study storage at {info.path}; run attnas create STUDY.toml first"
    assert list(tmp_path.iterdir()) == []


def test_read_only_open_reads_an_existing_study_and_refuses_a_foreign_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    optuna.create_study(study_name="s", storage=st.open_storage(st.parse(url))).enqueue_trial({})
    assert len(optuna.load_study(study_name="s", storage=st.open_existing(st.parse(url))).trials) == 1
    journal = tmp_path / "j.log"
    optuna.create_study(study_name="j", storage=st.open_storage(st.parse(str(journal))))
    assert optuna.load_study(study_name="j", storage=st.open_existing(st.parse(str(journal)))).study_name == "j"

    import sqlite3

    foreign = tmp_path / "other.db"
    sqlite3.connect(foreign).execute("create table t (x int)").connection.commit()
    with pytest.raises(StudyError, match="holds no Optuna study"):
        st.open_existing(st.parse(str(foreign)))
    assert [r[0] for r in sqlite3.connect(foreign).execute("select name from sqlite_master")] == ["t"]


def fill(disk: Path) -> Path:
    """Fill the disk completely; returns the filler file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def one_line(exc: pytest.ExceptionInfo, *needles: str) -> str:
    message = str(exc.value)
    assert "\n" not in message and "database server" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


def test_sqlite_on_a_full_disk_names_the_file_and_says_disk_full(tmpfs) -> None:
    disk = tmpfs("full", "size=1m")
    path = disk / "s.db"
    storage = st.open_storage(st.parse(str(path)))
    study = optuna.create_study(study_name="s", storage=storage)
    filler = fill(disk)

    with pytest.raises(StudyError) as exc:  # during a study: Optuna alone says "... exceeding max length"
        for i in range(200):
            study.set_user_attr(f"k{i}", "x" * 4000)
    one_line(exc, str(path), "disk full")

    other = disk / "new.db"
    with pytest.raises(StudyError) as exc:  # creating a new study on the full disk
        st.open_storage(st.parse(str(other)))
    one_line(exc, str(other), "disk full")
    filler.unlink()
    again = st.open_storage(st.parse(str(path)))
    assert optuna.load_study(study_name="s", storage=again).study_name == "s"
    for each in (storage, again):
        each.engine.dispose()  # type: ignore[attr-defined]


def test_sqlite_and_journal_on_a_read_only_disk_are_one_line(tmpfs) -> None:
    disk = tmpfs("ro", "ro,size=64k")
    with pytest.raises(StudyError) as exc:
        st.open_storage(st.parse(f"sqlite:///{disk}/s.db"))
    one_line(exc, f"{disk}/s.db", "read-only")
    with pytest.raises(StudyError) as exc:
        st.open_storage(st.parse(f"{disk}/sub/s.db"))
    one_line(exc, f"{disk}/sub", "read-only file system")
    with pytest.raises(StudyError) as exc:
        st.open_storage(st.parse(f"{disk}/s.log"))
    one_line(exc, f"{disk}/s.log", "read-only file system")


def get_json(app: Any, path: str) -> Any:
    """GET `path` from a WSGI app in-process and decode its JSON body."""
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda code, headers, exc_info=None: status.append(code)))
    assert status[0].startswith("200"), (status, body[:300])
    return json.loads(body)


@pytest.mark.slow
def test_an_attnas_study_on_a_plain_postgresql_url_reads_in_optuna_and_the_dashboard(tiny_study, pg_url, attnas,
                                                                                      tmp_path: Path) -> None:
    import importlib.util

    from optuna_dashboard import wsgi

    assert importlib.util.find_spec("psycopg") is not None  # the driver SQLAlchemy maps postgresql:// to
    path = tiny_study(pg_url, trials=1)
    name = path.stem
    try:
        done = attnas("search", str(path), "--no-wandb", "--report", str(tmp_path / "r.html"), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        optuna_cli = str(Path(sys.executable).parent / "optuna")

        studies = subprocess.run([optuna_cli, "studies", "--storage", pg_url, "-f", "json"], capture_output=True,
                                 text=True, timeout=60)
        assert studies.returncode == 0, studies.stderr
        assert name in [s["name"] for s in json.loads(studies.stdout)]
        trials = subprocess.run([optuna_cli, "trials", "--storage", pg_url, "--study-name", name, "-f", "json"],
                                capture_output=True, text=True, timeout=60)
        assert trials.returncode == 0, trials.stderr
        (row,) = json.loads(trials.stdout)
        values = list(row["values"].values()) if isinstance(row["values"], dict) else row["values"]  # metric names
        assert row["state"] == "COMPLETE" and len(values) == 2

        app = wsgi(pg_url)
        summaries = get_json(app, "/api/studies")["study_summaries"]
        study_id = next(s["study_id"] for s in summaries if s["study_name"] == name)
        (trial,) = get_json(app, f"/api/studies/{study_id}")["trials"]
        assert trial["state"] == "Complete" and trial["values"] == values
    finally:
        if name in optuna.get_all_study_names(pg_url):
            optuna.delete_study(study_name=name, storage=pg_url)


def test_the_cli_starts_without_optuna_scipy_or_torch() -> None:
    """The import rule (studies/__init__.py): what `attnas --help` imports pulls in none of the heavy libraries."""
    check = ("import sys, studies.cli; heavy = sorted({m.split('.')[0] for m in sys.modules} & "
             "{'optuna', 'scipy', 'torch', 'sqlalchemy', 'wandb', 'plotly'}); assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
