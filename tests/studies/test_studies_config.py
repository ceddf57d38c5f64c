"""Study files and storage URLs: parsing, overrides, YAML, masking; errors name the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from studies import storage as st
from studies.config import StudyError, example_path, read_file


@pytest.mark.parametrize("name", ["digits", "imagenet100", "imagenet1k-subset"])
def test_shipped_examples_are_valid(name: str) -> None:
    config = read_file(example_path(name))
    assert config.name and config.trials >= 1
    from studies.config import check_space

    assert check_space(config).size() > 1


def test_yaml_study_and_command_line_overrides(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: y\ntrials: 5\nobjectives: {params: true, max_gflops: 3}\nwandb: {mode: offline}\n")
    config = read_file(path).with_overrides(trials=9, storage="x.log", no_wandb=True)
    assert (config.trials, config.storage, config.wandb["mode"]) == (9, "x.log", "disabled")
    assert config.directions == ["maximize", "minimize", "minimize"] and config.max_gflops == 3
    with pytest.raises(StudyError, match="--trials"):
        read_file(path).with_overrides(trials=0)


@pytest.mark.parametrize(
    ("url", "kind", "target"),
    [
        ("sqlite:///a/b.db", "sqlite", "sqlite:///a/b.db"),
        ("runs/s.db", "sqlite", "sqlite:///runs/s.db"),
        ("journal:///shared/s.log", "journal", "/shared/s.log"),
        ("journal://rel/s.log", "journal", "rel/s.log"),
        ("shared/s.log", "journal", "shared/s.log"),
        ("postgresql://u:p@h:5432/db", "rdb", "postgresql+psycopg2://u:p@h:5432/db"),
        ("postgres://u@h/db", "rdb", "postgresql+psycopg2://u@h/db"),
    ],
)
def test_storage_url_forms(url: str, kind: str, target: str) -> None:
    info = st.parse(url)
    assert (info.kind, info.url) == (kind, target)


def test_unknown_storage_is_refused_with_the_forms_and_masked() -> None:
    with pytest.raises(StudyError, match="journal:///") as exc:
        st.parse("redis://user:hunter2@host/0")
    assert "hunter2" not in str(exc.value)
    assert st.mask("postgresql://me:pw@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert st.mask("postgresql://me@db/x") == "postgresql://me@db/x"
