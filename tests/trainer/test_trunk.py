"""Trunks (trainer.trunk): a plain backbone trained once on digits, loaded into attention placements.

Add-fusion blocks (SE/GC/NL) start as the identity, so a placement loaded from a trunk computes the trunk's
function exactly; scale-fusion gates are opened at insertion (OPEN_LOGIT), and what that keeps of the trunk's
held-out top-1 is measured here against the paper init's ~0.5 gate.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from search_space import GC, NL, SE, ArchSpec
from trainer import Schedule, SubsetSpec, TrunkError, load_cache, proxy_train, read_weights, train_trunk, trunk_key
from trainer.augment import Normalizer
from trainer.loop import build_proxy_model, evaluate, to_device
from trainer.trunk import Start, backbone_keys

PLAIN = ArchSpec(backbone="resnet18")
SCHEDULE = Schedule(epochs=1, batch_size=32, lr=0.1, width_mult=0.25, augment="pad_crop", flip=False, amp=False,
                    channels_last=False)
EVERY_STAGE = ("c2", "c3", "c4", "c5")


def placed(setting) -> ArchSpec:
    stages = ("c4", "c5") if isinstance(setting, NL) else EVERY_STAGE
    return ArchSpec(backbone="resnet18", stages={s: setting for s in stages})


@pytest.fixture(scope="module")
def trunk(tmp_path_factory) -> tuple[SubsetSpec, Path, Path, object]:
    """A 4-epoch trunk on all of digits at 16 px (~97 % held-out top-1): (subset, cache, weights, result)."""
    from trainer import write_digits_tree

    base = tmp_path_factory.mktemp("trunk")
    subset = SubsetSpec(root=str(write_digits_tree(base / "tree")), holdout_per_class=30, resolution=16)
    result, weights = train_trunk(PLAIN, subset, SCHEDULE, 4, root=base / "trunks", cache_dir=base / "cache")
    return subset, base / "cache", weights, result


def network(spec: ArchSpec, subset: SubsetSpec, cache: Path, weights: Path | None, **load) -> torch.nn.Module:
    from trainer.trunk import load_trunk

    model = build_proxy_model(spec, load_cache(subset, cache).num_classes, subset.resolution, SCHEDULE)
    if weights is not None:
        load_trunk(model, read_weights(weights), str(weights), **load)
    return model.eval()


def holdout_top1(model: torch.nn.Module, subset: SubsetSpec, cache: Path) -> float:
    split = to_device(load_cache(subset, cache).holdout, torch.device("cpu"))
    return evaluate(model, split, Normalizer(torch.device("cpu"), False), False)[0]


def test_the_trunk_lives_in_its_key_folder_and_learns(trunk) -> None:
    subset, _, weights, result = trunk
    assert weights.parent.name == trunk_key(placed(SE()), subset, SCHEDULE, 4)  # one trunk whatever the placement
    assert weights.parent.name != trunk_key(replace(PLAIN, width=0.5), subset, SCHEDULE, 4)  # one per width
    assert result.epochs == 4 and result.top1 > 0.8


def test_an_auto_seeds_study_shares_the_one_seed_trunk(trunk) -> None:
    """seeds = "auto" with its own max_seeds (3 here) names the same trunk; a schedule
    with max_seeds but one seed is refused, so the trunk's schedule must drop it."""
    subset = trunk[0]
    auto = replace(SCHEDULE, seeds="auto", max_seeds=3)
    assert trunk_key(placed(SE()), subset, auto, 4) == trunk_key(placed(SE()), subset, SCHEDULE, 4)


@pytest.mark.parametrize("setting", [SE(16, "add"), GC(16, "add"), NL(0.5, 1, "add"), SE(16, "scale"),
                                     GC(16, "scale"), NL(0.5, 1, "scale")], ids=lambda s: s.short())
def test_a_placement_keeps_every_backbone_weight_of_the_trunk(trunk, setting) -> None:
    subset, cache, weights, _ = trunk
    model = network(placed(setting), subset, cache, weights)
    saved, state = read_weights(weights), model.state_dict()
    assert set(backbone_keys(model)) == set(saved)
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    assert any(".attn." in k or ".nl." in k for k in state)  # the attention is there, under its own keys


@pytest.mark.parametrize("setting", [SE(16, "add"), GC(16, "add"), NL(0.5, 1, "add")], ids=lambda s: s.short())
def test_add_fusion_at_insertion_computes_the_trunks_function(trunk, setting) -> None:
    subset, cache, weights, _ = trunk
    x = torch.randn(8, 3, 16, 16)
    with torch.no_grad():
        expected = network(PLAIN, subset, cache, weights)(x)
        assert torch.equal(network(placed(setting), subset, cache, weights)(x), expected)


@pytest.mark.parametrize("setting", [SE(16, "scale"), GC(16, "scale")], ids=lambda s: s.short())
def test_scale_fusion_gates_opened_at_insertion_keep_the_trunks_top1(trunk, setting) -> None:
    """The measurement behind OPEN_LOGIT: the paper init's ~0.5 gate on every residual branch wrecks the trunk
    (97 % -> ~19 % on this one); opened gates (0.95 on every branch) keep it within two points: on two machines
    they lost 2 and 3 of 300 held-out images, so the bound leaves room for a CPU's float rounding, not for a
    wrecked trunk."""
    subset, cache, weights, _ = trunk
    plain = holdout_top1(network(PLAIN, subset, cache, weights), subset, cache)
    as_built = holdout_top1(network(placed(setting), subset, cache, weights, open_logit=None), subset, cache)
    opened = holdout_top1(network(placed(setting), subset, cache, weights), subset, cache)
    assert as_built < plain - 0.3, (plain, as_built)
    assert opened >= plain - 0.02, (plain, opened)


def test_a_run_from_a_trunk_starts_there_and_is_its_own_checkpoint(trunk, tmp_path) -> None:
    subset, cache, weights, _ = trunk
    spec, start = placed(GC(16, "add")), Start("k1", str(weights))
    kept: list = []
    from_trunk = proxy_train(spec, subset, SCHEDULE, cache_dir=cache, checkpoint_dir=tmp_path, start=start,
                             on_epoch=kept.append)
    scratch = proxy_train(spec, subset, SCHEDULE, cache_dir=cache, checkpoint_dir=tmp_path)
    assert from_trunk.checkpoint != scratch.checkpoint  # a run from scratch never resumes one from the trunk
    assert from_trunk.top1 > 0.8 > scratch.top1  # one epoch from the trunk beats one from scratch by far


def test_a_trunk_that_does_not_fit_is_one_line(trunk, tmp_path) -> None:
    subset, cache, weights, _ = trunk
    wider = network(replace(PLAIN, width=0.5), subset, cache, None)
    torch.save(wider.state_dict(), tmp_path / "wide.pt")
    with pytest.raises(TrunkError) as err:
        network(placed(SE()), subset, cache, tmp_path / "wide.pt")
    message = str(err.value)
    assert "\n" not in message and "wide.pt" in message and "shape(s) differ" in message and "width" in message
    torch.save({"not": "weights"}, tmp_path / "junk.pt")
    with pytest.raises(TrunkError, match="expected a state_dict"):
        read_weights(tmp_path / "junk.pt")
    saved = read_weights(weights)
    torch.save({k: v for k, v in saved.items() if not k.startswith("layer4.")}, tmp_path / "short.pt")
    with pytest.raises(TrunkError, match=r"backbone key\(s\) missing \(e\.g\. layer4"):
        network(PLAIN, subset, cache, tmp_path / "short.pt")
