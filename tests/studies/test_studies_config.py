"""Study files and storage URLs: parsing, overrides, YAML, masking; errors name the field and the fix."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from studies import storage as st
from studies.config import StudyError, example_path, from_dict, read_file


@pytest.mark.parametrize("name", ["digits", "fashion", "fashion-odd", "imagenet100", "imagenet1k-subset"])
def test_shipped_examples_are_valid(name: str) -> None:
    config = read_file(example_path(name))
    assert config.name and config.trials >= 1
    assert config.space.size() > 1
    assert from_dict(config.to_dict()) == replace(config, source=None)  # what the study stores reads back the same


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[2].glob("benchmarks/*.toml")), ids=lambda p: p.name)
def test_benchmark_study_variants_are_valid(path: Path) -> None:
    """The benchmarks' variants of the examples are only read by scripts RESULTS.md cites: keep them loadable."""
    config = read_file(path)
    assert config.name == path.stem and config.space.size() > 1


def test_yaml_study_and_command_line_overrides(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: y\ntrials: 5\nobjectives: {params: true, max_gflops: 3}\nwandb: {mode: offline}\n")
    config = read_file(path).with_overrides(trials=9, storage="x.log", no_wandb=True)
    assert (config.trials, config.storage, config.wandb.mode) == (9, "x.log", "disabled")
    assert config.directions == ["maximize", "minimize", "minimize"] and config.max_gflops == 3
    with pytest.raises(StudyError, match="--trials"):
        read_file(path).with_overrides(trials=0)


@pytest.mark.parametrize(
    ("url", "kind", "target"),
    [
        ("sqlite:///a/b.db", "sqlite", "sqlite:///{cwd}/a/b.db"),
        ("runs/s.db", "sqlite", "sqlite:///{cwd}/runs/s.db"),
        ("journal:///shared/s.log", "journal", "/shared/s.log"),
        ("journal:////shared/s.log", "journal", "/shared/s.log"),
        ("journal://rel/s.log", "journal", "{cwd}/rel/s.log"),
        ("shared/s.log", "journal", "{cwd}/shared/s.log"),
        ("postgresql://u:p@h:5432/db", "rdb", "postgresql://u:p@h:5432/db"),
        ("postgres://u@h/db", "rdb", "postgresql://u@h/db"),
    ],
)
def test_storage_url_forms(url: str, kind: str, target: str) -> None:
    """File storages get one absolute form (workers started elsewhere share the file); SQL URLs stay as given."""
    info = st.parse(url)
    assert (info.kind, info.url) == (kind, target.format(cwd=Path.cwd()))


def test_unknown_storage_is_refused_with_the_forms_and_masked() -> None:
    with pytest.raises(StudyError, match="journal:///") as exc:
        st.parse("redis://user:hunter2@host/0")
    assert "hunter2" not in str(exc.value)
    assert st.mask("postgresql://me:pw@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert st.mask("postgresql://me@db/x") == "postgresql://me@db/x"


def test_sections_are_typed_values_with_their_defaults_in_one_place(tmp_path: Path) -> None:
    """[schedule] is trainer.Schedule itself (its defaults), [data] a SubsetSpec once resolved; new sections parse."""
    from trainer import Schedule, SubsetSpec

    path = tmp_path / "s.toml"
    path.write_text('name = "t"\n[schedule]\nepochs = 3\n[data]\nclasses = ["a", "b"]\n'
                    '[early_stopping]\nkind = "moasha"\n[fidelity]\nseeds = 2\n')
    config = read_file(path)
    assert config.schedule == Schedule(epochs=3)
    assert config.data.spec() == SubsetSpec(root="digits", classes=("a", "b"))
    assert (config.early_stopping.kind, config.early_stopping.eta, config.early_stopping.min_epochs) == ("moasha", 3, 1)
    assert (config.fidelity.seeds, config.fidelity.epochs_factor) == (2, None)
    from studies.fidelity import settings

    merged = settings(config, extra=None, seeds=None, epochs_factor=None)  # the file's seeds, DEFAULTS for the rest
    assert (merged.seeds, merged.epochs_factor, merged.extra) == (2, 4.0, 8)
    assert read_file(example_path()).fidelity is None
    goals = config.objectives
    assert goals.names == ["top1", "gflops"]
    assert goals.constraints(9.0) == {"gflops_budget": -1.0, "front_eligible": -1.0}
    with pytest.raises(AttributeError):
        config.objectives.max_gflops = 1.0  # type: ignore[misc]  (frozen)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[schedule]\nepochs = 0\n', "[schedule] epochs: 0 must be a whole number >= 1"),
        ('[schedule]\nepoch = 2\n', "unknown field(s) ['epoch']"),
        ('[data]\nclasses = "some"\n', "[data] classes: 'some' is not understood"),
        ('[early_stopping]\nkind = "asha"\n', "field `early_stopping.kind`"),
        ('[early_stopping]\neta = 1\n', "field `early_stopping.eta`"),
        ('[fidelity]\nepochs = 2\n', "field `fidelity.epochs` is not a known setting"),
        ('[objectives]\nmax_gflops = -1\n', "field `objectives.max_gflops`"),
        ('[proxy]\nstart = "trunk"\n', 'start = "trunk" needs exactly one of trunk_epochs'),
        ('[proxy]\nstart = "trunk"\ntrunk_epochs = 2\ntrunk = "t.pt"\n', "needs exactly one of"),
        ('[proxy]\ntrunk_epochs = 2\n', 'trunk_epochs is only used with start = "trunk"'),
        ('[proxy]\nstart = "trunk"\ntrunk_epochs = 0\n', "field `proxy.trunk_epochs`"),
        ('[proxy]\nstart = "warm"\n', "field `proxy.start`"),
    ],
)
def test_bad_sections_are_one_line_naming_the_field(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text('name = "t"\n' + text)
    with pytest.raises(StudyError) as exc:
        read_file(path)
    message = str(exc.value)
    assert needle in message and "\n" not in message and str(path) in message


def test_budget_decision_lives_in_objectives() -> None:
    from studies.goals import Objectives

    goals = Objectives(max_gflops=2.0, params=True)
    assert goals.feasible(2.0) and not goals.feasible(2.01)
    assert goals.constraints(2.5) == {"gflops_budget": 0.5, "front_eligible": -1.0}
    assert goals.constraints(1.5, eligible=False) == {"gflops_budget": -0.5, "front_eligible": 1.0}
    assert goals.values(None, 2.5, 3_000_000) == [0.0, 2.5, 3.0] and goals.values(float("nan"), 1, 0)[0] == 0.0
    assert goals.directions == ["maximize", "minimize", "minimize"] and goals.names[-1] == "params_m"


def test_the_proxy_start_is_part_of_the_studys_identity(tmp_path: Path) -> None:
    """Trials from a trunk and from scratch are not comparable: a resumed study may not switch; an older study
    (stored before [proxy] existed) reads as scratch and resumes."""
    path = tmp_path / "s.toml"
    path.write_text('name = "t"\n[proxy]\nstart = "trunk"\ntrunk_epochs = 3\n')
    trunk = read_file(path)
    scratch = from_dict({"name": "t"})
    assert (trunk.proxy.start, trunk.proxy.trunk_epochs) == ("trunk", 3)
    assert trunk.identity()["proxy"] != scratch.identity()["proxy"]
    stored = scratch.to_dict()
    del stored["proxy"]
    assert from_dict(stored).identity() == scratch.identity()
