"""The built networks: equal to torchvision without attention, paper parameter counts with it."""

import pytest
import torch
import torchvision

from search_space import GC, NL, SE, ArchSpec, NoAttn, build_model
from search_space.blocks import GlobalContext, NonLocal, SqueezeExcite


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("backbone", ["resnet18", "resnet34", "resnet50", "resnet101"])
def test_plain_spec_is_torchvision(backbone):
    ours = build_model(ArchSpec(backbone))
    theirs = getattr(torchvision.models, backbone)()
    assert n_params(ours) == n_params(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.eval(), theirs.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


def test_torchvision_weights_warm_start_an_attention_model():
    spec = ArchSpec("resnet50", stages=(SE(), GC(), NL(), GC(fusion="scale")))
    result = build_model(spec).load_state_dict(torchvision.models.resnet50().state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys, "attention blocks have their own keys"
    assert all(".attn." in k or ".nl." in k for k in result.missing_keys)


def test_se_resnet50_matches_the_paper():
    # Hu et al. 2018, Table 2: SE-ResNet-50 has 28.1M parameters (r = 16, SE in every block).
    assert n_params(build_model(ArchSpec(stages=(SE(16), SE(16), SE(16), SE(16))))) == 28_088_024


@pytest.mark.parametrize(("ratio", "paper_millions"), [(2, 45.7), (4, 35.7), (8, 30.7), (16, 28.1), (32, 26.9)])
def test_se_ratio_ablation_matches_the_paper(ratio, paper_millions):
    # Hu et al. 2018, Table 5 (SE-ResNet-50, varying r): within 2% of the published parameter counts.
    params = n_params(build_model(ArchSpec(stages=(SE(ratio),) * 4)))
    assert abs(params / 1e6 - paper_millions) / paper_millions < 0.02


def test_gc_resnet50_matches_the_paper():
    # Cao et al. 2019, Table 1: GC-ResNet-50 (c3-c5, r=16, att pooling, add fusion) has 28.08M parameters.
    assert n_params(build_model(ArchSpec(stages=(NoAttn(), GC(16), GC(16), GC(16))))) == 28_078_773


def test_one_nl_block_after_the_last_c4_block_adds_its_parameters():
    spec = ArchSpec(stages=(NoAttn(), NoAttn(), NL(0.5, 1), NoAttn()))
    model = build_model(spec)
    c, inner = 1024, 512
    # theta, phi, g: C -> C/2 convs (only theta has a bias: see NonLocal's docstring); W: C/2 -> C; BN after W.
    expected = 3 * c * inner + inner + inner * c + 2 * c
    assert n_params(model) - 25_557_032 == expected
    assert [i for i, block in enumerate(model.layer3) if block.nl is not None] == [5]


def test_nl_count_places_blocks_after_every_other_residual_block():
    model = build_model(ArchSpec(stages=(NoAttn(), NL(count=2), NL(count=3), NoAttn())))
    assert [i for i, b in enumerate(model.layer2) if b.nl is not None] == [1, 3]
    assert [i for i, b in enumerate(model.layer3) if b.nl is not None] == [1, 3, 5]


ADD_SPECS = [
    ArchSpec("resnet18", stages=(SE(4, "add"), GC(4, "add", "att"), NL(0.5, 1, "add", True), GC(8, "add", "avg"))),
    ArchSpec("resnet50", stages=(NoAttn(), SE(16, "add"), NL(0.25, 2, "add"), GC(16, "add"))),
]


@pytest.mark.parametrize("spec", ADD_SPECS, ids=lambda s: s.name)
def test_add_fusion_blocks_start_as_the_identity(spec):
    plain = build_model(ArchSpec(spec.backbone, spec.width), 10, width_mult=0.25, input_size=32).eval()
    model = build_model(spec, 10, width_mult=0.25, input_size=32).eval()
    model.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x))


def test_every_block_parameter_learns():
    spec = ArchSpec("resnet18", stages=(SE(4, "add"), GC(4, "scale", "att"), NL(0.5, 1, "add", True), SE(8, "scale")))
    torch.manual_seed(0)
    model = build_model(spec, 10, width_mult=0.25, input_size=32)
    blocks = [m for m in model.modules() if isinstance(m, (SqueezeExcite, GlobalContext, NonLocal))]
    assert {type(b) for b in blocks} == {SqueezeExcite, GlobalContext, NonLocal}
    before = {name: p.detach().clone() for b in blocks for name, p in b.named_parameters(prefix=str(id(b)))}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    # Zero-initialised last layers pass no gradient upstream on the first step; three steps reach all.
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    after = {name: p for b in blocks for name, p in b.named_parameters(prefix=str(id(b)))}
    unchanged = [name.split(".", 1)[1] for name, p in after.items() if torch.equal(p, before[name])]
    # GC's conv_mask bias shifts every position's logit equally, so softmax cancels it: its true gradient
    # is zero (float rounding may still nudge it). It stays only because the GC paper's count includes it.
    assert set(unchanged) <= {"conv_mask.bias"}
    assert len(after) - len(unchanged) > 20


@pytest.mark.parametrize(("size", "c5"), [(32, 4), (48, 6), (64, 4), (96, 6), (224, 7)])
def test_low_resolution_stem_keeps_c5_at_least_4x4(size, c5):
    model = build_model(ArchSpec("resnet18"), 10, width_mult=0.25, input_size=size).eval()
    features = []
    model.layer4.register_forward_hook(lambda module, inputs, output: features.append(output.shape[-2:]) and None)
    with torch.no_grad():
        model(torch.randn(1, 3, size, size))
    assert features == [(c5, c5)]


def test_proxy_width_thins_the_network_but_not_the_spec():
    spec = ArchSpec("resnet50", stages=(SE(16),) * 4)
    thin = build_model(spec, 10, width_mult=0.25, input_size=32)
    assert thin.fc.in_features == 512
    assert n_params(thin) < n_params(build_model(spec, 10)) / 10
    with pytest.raises(ValueError, match="width_mult"):
        build_model(spec, 10, width_mult=0)
