"""SearchSpace as data, sampling through real Optuna trials, enumeration, and refusals."""

import optuna
import pytest

from search_space import NL, SE, STAGES, ArchSpec, NoAttn, SearchSpace, SpecError, suggest

SMALL = {
    "backbones": ["resnet18"],
    "kinds": {"c2": ["none", "se"], "c3": ["none", "gc"], "c4": ["none", "nl"], "c5": ["none", "se", "gc"]},
    "ratios": [4, 16],
    "fusions": ["add", "scale"],
    "nl_widths": [0.5],
}


def test_size_matches_enumeration_and_names_are_unique():
    space = SearchSpace.from_dict(SMALL)
    specs = list(space.enumerate())
    # c2: 1 + 2x2, c3: 1 + 2x2x1, c4: 1 + 1x1x2x1, c5: 1 + 4 + 4
    assert space.size() == len(specs) == 5 * 5 * 3 * 9
    assert len({s.name for s in specs}) == len(specs)
    assert len({s.id for s in specs}) == len(specs)


def test_space_round_trips_through_dict_toml_and_yaml(tmp_path):
    space = SearchSpace.from_dict(SMALL)
    assert SearchSpace.from_dict(space.to_dict()) == space
    toml = tmp_path / "space.toml"
    toml.write_text(
        '[space]\nbackbones = ["resnet18"]\nratios = [4, 16]\nnl_widths = [0.5]\n'
        '[space.kinds]\nc2 = ["none", "se"]\nc3 = ["none", "gc"]\nc4 = ["none", "nl"]\nc5 = ["none", "se", "gc"]\n'
    )
    assert SearchSpace.from_file(toml) == space
    yaml_file = tmp_path / "space.yaml"
    yaml_file.write_text("backbones: [resnet18]\nratios: [4, 16]\nnl_widths: [0.5]\n"
                         "kinds: {c2: [none, se], c3: [none, gc], c4: [none, nl], c5: [none, se, gc]}\n")
    assert SearchSpace.from_file(yaml_file) == space


def test_sampling_through_an_optuna_study_yields_valid_specs_with_conditional_params():
    space = SearchSpace.from_dict({**SMALL, "backbones": ["resnet18", "resnet50"], "nl_subsample": [False, True]})
    seen: list[ArchSpec] = []

    def objective(trial: optuna.Trial) -> float:
        spec = suggest(trial, space)
        seen.append(spec)
        for stage, attn in zip(STAGES, spec.stages, strict=True):
            assert trial.params[f"{stage}.kind"] == attn.kind
            assert attn.kind in space.kinds[stage]
            assert (f"{stage}.ratio" in trial.params) == (attn.kind in ("se", "gc"))
            assert (f"{stage}.width" in trial.params) == (attn.kind == "nl")
            assert (f"{stage}.fusion" in trial.params) == (attn.kind != "none")
        return 0.0

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=10))
    study.optimize(objective, n_trials=40)
    assert len(seen) == 40
    assert all(ArchSpec.from_dict(s.to_dict()) == s for s in seen)
    assert {s.backbone for s in seen} == {"resnet18", "resnet50"}
    assert len({s.stage("c4").kind for s in seen}) == 2


def test_suggest_rebuilds_the_same_spec_from_fixed_params():
    space = SearchSpace.from_dict(SMALL)
    target = ArchSpec("resnet18", 1.0, (SE(4, "add"), NoAttn(), NL(0.5, 1, "scale"), NoAttn()))
    params = {"backbone": "resnet18", "width": 1.0, "c2.kind": "se", "c2.ratio": 4, "c2.fusion": "add",
              "c3.kind": "none", "c4.kind": "nl", "c4.width": 0.5, "c4.count": 1, "c4.fusion": "scale",
              "c4.subsample": False, "c5.kind": "none"}
    assert suggest(optuna.trial.FixedTrial(params), space) == target


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kinds": {"c3": ["none", "cbam"]}}, "space.kinds.c3: unknown kind(s) ['cbam']"),
        ({"kinds": {"c3": []}}, "space.kinds.c3: the choice list is empty"),
        ({"ratios": []}, "space.ratios: the choice list is empty"),
        ({"backbones": ["resnet18"], "ratios": [128]}, "space.ratios: 128 does not fit c2 of resnet18"),
        ({"backbones": ["resnet18"], "widths": [0.25], "nl_widths": [0.01]}, "space.nl_widths:"),
        ({"backbones": ["resnet18"], "nl_counts": [2]}, "space.nl_counts:"),
        ({"fusions": ["concat"]}, "space.fusions: ['concat'] not allowed"),
        ({"backbones": ["vgg16"]}, "space.backbones: ['vgg16'] not allowed"),
        ({"ratio": [4]}, "space: unknown field(s) ['ratio']"),
        ({"ratios": 16}, "space.ratios: expected a list of choices"),
    ],
)
def test_impossible_spaces_are_refused_naming_the_field(data, message):
    with pytest.raises(SpecError) as info:
        SearchSpace.from_dict(data)
    assert message in str(info.value)


def test_missing_space_file_is_refused(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        SearchSpace.from_file(tmp_path / "nope.toml")


def test_every_name_of_a_space_reads_back_as_its_spec():
    """`ArchSpec.from_name` inverts `name` over every option: kinds, ratios, fusions, poolings, NL settings."""
    space = SearchSpace.from_dict({
        "backbones": ["resnet50"], "widths": [1.0, 0.25],
        "kinds": {"c2": ["none", "se"], "c3": ["gc"], "c4": ["nl", "se"], "c5": ["nl", "gc"]},
        "ratios": [4, 16], "fusions": ["add", "scale"], "poolings": ["att", "avg"],
        "nl_widths": [0.5, 0.25, 0.3], "nl_counts": [1, 2], "nl_subsample": [False, True],
    })
    specs = list(space.enumerate())
    assert len(specs) > 1000
    assert all(ArchSpec.from_name(s.name) == s for s in specs)


@pytest.mark.parametrize(("name", "message"), [
    ("r51-c2:none-c3:none-c4:none-c5:none", "backbone r18/r34/r50/r101"),
    ("r50-c2:none-c3:none-c4:none", "one entry per stage"),
    ("r50-c2:none-c4:none-c3:none-c5:none", "expected stage c3"),
    ("r50-c2:none-c3:gc16x-c4:none-c5:none", "c3: 'gc16x' is not a stage setting"),
    ("r50-c2:none-c3:none-c4:se0s-c5:none", "stages.c4.ratio"),
])
def test_bad_names_are_refused_naming_the_part(name, message):
    with pytest.raises(SpecError, match=message):
        ArchSpec.from_name(name)


class RecordingTrial:
    """A trial that answers the first choice and records the order parameters are asked in."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def suggest_categorical(self, name, choices):
        self.asked.append(name)
        return choices[-1]


def test_parameter_and_enumeration_orders_are_pinned():
    """Seeded studies replay only if parameters are asked in the same order; `enumerate` promises a fixed one."""
    space = SearchSpace.from_dict({"backbones": ["resnet50"], "kinds": {s: ["nl", "gc", "se"] for s in STAGES},
                                   "ratios": [4, 16], "fusions": ["add", "scale"], "poolings": ["att", "avg"],
                                   "nl_widths": [0.5, 0.25], "nl_counts": [1, 2], "nl_subsample": [False, True]})
    trial = RecordingTrial()
    suggest(trial, space)  # the last choice of every kind list: se everywhere
    assert trial.asked[:5] == ["backbone", "width", "c2.kind", "c2.ratio", "c2.fusion"]
    nl_first = SearchSpace.from_dict({**space.to_dict(), "kinds": {"c2": ["nl"]}})
    trial = RecordingTrial()
    suggest(trial, nl_first)
    assert trial.asked[2:7] == ["c2.kind", "c2.fusion", "c2.width", "c2.count", "c2.subsample"]
    # Enumeration follows each settings class's field order, whatever order suggest asks in.
    assert list(space.kind_options("nl"))[:3] == [NL(0.5, 1, "add", False), NL(0.5, 1, "add", True),
                                                 NL(0.5, 1, "scale", False)]
    assert [s.short() for s in space.kind_options("gc")][:3] == ["gc4a", "gc4am", "gc4s"]
    assert [s.short() for s in space.stage_options("c2")][:1] == ["nl2a1"]
