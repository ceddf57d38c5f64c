"""A kind defined here alone goes through the whole of attnas: the registry is the only place it is added.

The toy is ECA-like (Wang et al. 2020): global average pool, a 1-D conv of odd size `k` across channels, a
hard-sigmoid gate. It has one setting, its own choice list (`eca_kernels`, which `SearchSpace` has no field
for) and one op fvcore skips (`aten::hardsigmoid`), so it exercises `KindEntry.options` and `flop_handles`.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from typing import ClassVar

import optuna
import pytest
import torch
from fvcore.nn.jit_handles import elementwise_flop_counter
from torch import nn
from typer.testing import CliRunner

from objectives import count_flops, count_params
from search_space import ArchSpec, NoAttn, SearchSpace, SpecError, build_model, suggest
from search_space.registry import KindEntry, Param, kinds, register, registered


@dataclass(frozen=True)
class ToyECA:
    k: int = 3
    kind: ClassVar[str] = "eca"

    def validate(self, where: str) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1 or self.k % 2 == 0:
            raise SpecError(f"{where}.k: {self.k!r} must be an odd whole number, e.g. 3")

    def fits(self, where: str, channels: int, blocks: int) -> None:
        if self.k > channels:
            raise SpecError(f"{where}.k: {self.k} is wider than the stage's {channels} channels")

    def short(self) -> str:
        return f"eca{self.k}"

    @classmethod
    def from_short(cls, text: str) -> ToyECA | None:
        match = re.fullmatch(r"eca(\d+)", text)
        return cls(int(match[1])) if match else None


class ToyECABlock(nn.Module):
    def __init__(self, channels: int, setting: ToyECA) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, setting.k, padding=setting.k // 2, bias=False)
        nn.init.constant_(self.conv.weight, 1 / setting.k)  # a mean over neighbours: the backbone init must keep it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = nn.functional.hardsigmoid(self.conv(x.mean((2, 3)).unsqueeze(1)).squeeze(1))
        return x * gate[:, :, None, None]


TOY = KindEntry(
    ToyECA,
    params=(Param("k", "eca_kernels"),),
    builder=ToyECABlock,
    options={"eca_kernels": (3, 5)},
    flop_handles={"aten::hardsigmoid": elementwise_flop_counter(0, 1)},
)
SPACE = {"backbones": ["resnet18"], "kinds": {"c4": ["none", "eca"], "c5": ["eca"]}}


@pytest.fixture
def toy():
    with registered(TOY) as entry:
        yield entry
    assert "eca" not in kinds()


def test_suggest_samples_the_toy_through_real_optuna_trials(toy):
    space = SearchSpace.from_dict(SPACE)
    assert space.choices("eca_kernels") == (3, 5)  # the entry's default list
    assert space.size() == 3 * 2  # c4: none + eca3 + eca5; c5: eca3 + eca5
    assert {s.name for s in space.enumerate()} == {
        f"r18-c2:none-c3:none-c4:{c4}-c5:{c5}" for c4 in ("none", "eca3", "eca5") for c5 in ("eca3", "eca5")}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        spec = suggest(trial, space)
        assert trial.params["c5.kind"] == "eca" and spec.stage("c5") == ToyECA(trial.params["c5.k"])
        assert ("c4.k" in trial.params) == (spec.stage("c4").kind == "eca")
        study.tell(trial, 0.0)
        seen.add(spec)
    assert {s.stage("c5").k for s in seen} == {3, 5} and NoAttn() in {s.stage("c4") for s in seen}


def test_the_space_reads_writes_and_checks_the_toy_list(toy):
    space = SearchSpace.from_dict({**SPACE, "eca_kernels": [5]})
    assert space.to_dict()["eca_kernels"] == [5] and SearchSpace.from_dict(space.to_dict()) == space
    assert {s.stage("c5") for s in space.enumerate()} == {ToyECA(5)}
    with pytest.raises(SpecError, match=r"space\.eca_kernels: \[4\] not allowed; 4 must be an odd whole number"):
        SearchSpace.from_dict({**SPACE, "eca_kernels": [4]})
    with pytest.raises(SpecError, match=r"space\.eca_kernels: 9 does not fit c2 of resnet18 at width 0\.0625"):
        SearchSpace.from_dict({**SPACE, "widths": [0.0625], "kinds": {"c2": ["eca"]}, "eca_kernels": [9]})


def test_the_toy_builds_counts_and_names_itself(toy):
    spec = ArchSpec("resnet18", stages=(NoAttn(), NoAttn(), ToyECA(3), ToyECA(5)))
    # Names and JSON read back; the stage's JSON is the dataclass's fields.
    assert spec.name == "r18-c2:none-c3:none-c4:eca3-c5:eca5"
    assert ArchSpec.from_name(spec.name) == spec
    assert ArchSpec.from_json(spec.to_json()) == spec and ArchSpec.from_json(spec.to_json()).id == spec.id
    assert spec.to_dict()["stages"]["c5"] == {"kind": "eca", "k": 5}
    with pytest.raises(SpecError, match=r"stages\.c4\.k: 4 must be an odd whole number"):
        ArchSpec.from_name("r18-c2:none-c3:none-c4:eca4-c5:none")

    # A thin proxy: the blocks sit inside every residual block of c4/c5, keep their own init, and learn.
    proxy = build_model(spec, 10, width_mult=0.25, input_size=32)
    blocks = {name: m for name, m in proxy.named_modules() if isinstance(m, ToyECABlock)}
    assert sorted(blocks) == ["layer3.0.attn", "layer3.1.attn", "layer4.0.attn", "layer4.1.attn"]
    assert all(torch.all(b.conv.weight == 1 / b.conv.kernel_size[0]) for b in blocks.values())
    out = proxy(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(b.conv.weight.grad.abs().sum() > 0 for b in blocks.values())

    # Parameters and FLOPs from first principles: resnet18 at 224 px has c4 = 256 ch at 14x14, c5 = 512 at 7x7.
    plain = ArchSpec("resnet18")
    assert count_params(spec) - count_params(plain) == 2 * 3 + 2 * 5
    flops, base = count_flops(spec), count_flops(plain)
    assert flops.uncounted == ()
    assert flops.by_operator["hardsigmoid"] == 2 * 256 + 2 * 512  # the entry's handle: one flop per channel
    assert flops.fvcore - base.fvcore == 2 * 256 * 3 + 2 * 512 * 5  # fvcore's own count: the 1-D convs
    per_block = {256: 14 * 14, 512: 7 * 7}  # pool + multiply one flop per activation, conv C*k, gate C
    assert flops.complete - base.complete == sum(
        2 * (2 * c * hw + c * k + c) for (c, hw), k in zip(per_block.items(), (3, 5), strict=True))


@pytest.mark.slow
def test_a_two_trial_study_runs_the_toy_through_the_cli(toy, tiny_study, tmp_path):
    from studies.cli import app

    study_file = tiny_study(trials=2, kinds='{c2 = ["none"], c3 = ["none"], c4 = ["none", "eca"], c5 = ["eca"]}')
    result = CliRunner().invoke(app, ["search", str(study_file), "--no-wandb", "--trials", "2",
                                      "--report", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    config = tomllib.loads(study_file.read_text())
    study = optuna.load_study(study_name=config["name"], storage=config["storage"])
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2
    # Each trial's spec, rebuilt from its Optuna params, carries the toy; the study's own record (whatever
    # shape studies gives it) names that same spec.
    space = SearchSpace.from_dict(config["space"])
    names = [suggest(optuna.trial.FixedTrial(t.params), space).name for t in complete]
    assert all(re.search(r"-c5:eca[35]$", name) for name in names), names
    assert all(name in json.dumps(t.user_attrs) for name, t in zip(names, complete, strict=True))
    assert (tmp_path / "r.html").is_file()


def test_registering_refuses_entries_that_would_break_later():
    @dataclass(frozen=True)
    class Clash:
        width: float = 0.5
        kind: ClassVar[str] = "clash"
        validate = fits = ToyECA.validate

        def short(self) -> str:
            return "clash"

        @classmethod
        def from_short(cls, text: str) -> Clash | None:
            return cls() if text == "clash" else None

    with pytest.raises(SpecError, match="the name 'se' is taken"):
        register(KindEntry(type("SE2", (ToyECA,), {"kind": "se"})))
    with pytest.raises(SpecError, match="parameter 'width' is nl's over 'nl_widths'"):
        register(KindEntry(Clash, params=(Param("width", "clash_widths"),)))
    with pytest.raises(SpecError, match="overlap those of"):
        register(KindEntry(type("Greedy", (ToyECA,), {"kind": "greedy", "from_short": classmethod(lambda c, t: c())})))
    assert list(kinds()) == ["none", "se", "gc", "nl"]


def test_without_the_registration_the_toy_is_unknown():
    with registered(TOY):
        assert list(kinds()) == ["none", "se", "gc", "nl", "eca"]
        assert "eca" not in SearchSpace().kinds["c2"]  # not in the default space: old studies resume unchanged
    with pytest.raises(SpecError, match=r"unknown field\(s\) \['eca_kernels'\]"):
        SearchSpace.from_dict({"eca_kernels": [3]})
    with pytest.raises(SpecError, match=r"stages\.c5\.kind: 'eca' is not one of 'none', 'se', 'gc', 'nl'"):
        ArchSpec.from_dict({"stages": {"c5": {"kind": "eca", "k": 3}}})
    with pytest.raises(SpecError, match="'eca3' is not a stage setting"):
        ArchSpec.from_name("r18-c2:none-c3:none-c4:none-c5:eca3")
