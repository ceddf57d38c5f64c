"""FLOP and parameter counts against torchvision, the papers, and first principles."""

import pytest
import torch
import torchvision
from fvcore.nn import FlopCountAnalysis

from objectives import count_flops, count_params, measure
from objectives.flops import _cache
from search_space import GC, NL, SE, ArchSpec, NoAttn, build_model


def torchvision_fvcore_flops(backbone: str, resolution: int = 224) -> int:
    model = getattr(torchvision.models, backbone)().eval()
    analysis = FlopCountAnalysis(model, torch.zeros(1, 3, resolution, resolution))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return int(analysis.total())


@pytest.mark.parametrize("backbone", ["resnet18", "resnet34", "resnet50", "resnet101"])
def test_plain_specs_equal_torchvision(backbone):
    spec = ArchSpec(backbone)
    assert count_flops(spec).fvcore == torchvision_fvcore_flops(backbone)
    assert count_params(spec) == sum(p.numel() for p in getattr(torchvision.models, backbone)().parameters())


def test_resnet50_published_figures():
    flops = count_flops(ArchSpec("resnet50"))
    assert flops.fvcore == 4_111_512_576  # eval mode, BatchNorm counted
    assert round(flops.fvcore_no_bn / 1e9, 3) == 4.089  # torchvision's documented GFLOPs
    assert count_params(ArchSpec("resnet50")) == 25_557_032
    # The complete count adds the residual additions (and the stem's max-pool) fvcore skips.
    assert flops.by_operator["add"] == sum(
        256 * 56 * 56 * (i == 0) * 3 + 512 * 28 * 28 * (i == 1) * 4 + 1024 * 14 * 14 * (i == 2) * 6
        + 2048 * 7 * 7 * (i == 3) * 3 for i in range(4))
    assert flops.complete > flops.fvcore
    assert flops.uncounted == ()


def test_se_resnet50_costs_under_one_percent_more():
    # Hu et al. 2018: 3.86 -> 3.87 GFLOPs (ResNet v1); the relative cost is what we can compare.
    plain = count_flops(ArchSpec("resnet50"))
    se = count_flops(ArchSpec(stages=(SE(16),) * 4))
    assert 0 < se.fvcore / plain.fvcore - 1 < 0.01
    assert 0 < se.complete / plain.complete - 1 < 0.01
    # SE's gate is exactly what fvcore skips: one sigmoid per channel, one multiply per activation.
    assert se.by_operator["sigmoid"] == 3 * 256 + 4 * 512 + 6 * 1024 + 3 * 2048
    assert se.by_operator["mul"] == se.by_operator["add"]


def test_nl_complete_count_includes_the_affinity_and_softmax():
    flops = count_flops(ArchSpec(stages=(NoAttn(), NoAttn(), NL(0.5, 1), NoAttn())))
    positions, inner = 14 * 14, 512  # c4 at 224 px
    assert flops.by_operator["matmul"] == 2 * positions * positions * inner  # theta^T phi, then (.) g
    assert flops.by_operator["softmax"] == 3 * positions * positions
    assert flops.complete - flops.fvcore >= flops.by_operator["softmax"]
    subsampled = count_flops(ArchSpec(stages=(NoAttn(), NoAttn(), NL(0.5, 1, subsample=True), NoAttn())))
    assert subsampled.by_operator["matmul"] == 2 * positions * (positions // 4) * inner


def test_per_stage_breakdown_adds_up_and_locates_the_block():
    plain = count_flops(ArchSpec("resnet50"))
    gc = count_flops(ArchSpec(stages=(NoAttn(), NoAttn(), NoAttn(), GC(16))))
    assert sum(gc.per_stage.values()) == gc.complete
    assert set(gc.per_stage) == {"stem", "c2", "c3", "c4", "c5", "head"}
    grew = [s for s in gc.per_stage if gc.per_stage[s] != plain.per_stage[s]]
    assert grew == ["c5"]


def test_deployment_flops_scale_with_resolution_and_ignore_nothing_new():
    spec = ArchSpec(stages=(SE(16), GC(16), NL(0.5), GC(16, "scale", "avg")))
    at_224, at_112 = count_flops(spec, 224), count_flops(spec, 112)
    assert at_112.uncounted == at_224.uncounted == ()
    assert 3.5 < at_224.fvcore / at_112.fvcore < 4.5


def test_counting_is_cached_by_spec_id_and_uses_an_eval_model():
    spec = ArchSpec(stages=(SE(8), GC(8), NL(0.25), SE(8, "add")))
    _cache.pop((spec.id, 224), None)
    first = count_flops(spec)
    assert count_flops(ArchSpec.from_json(spec.to_json())) is first  # an equal spec hits the cache
    assert (spec.id, 224) in _cache and count_flops(spec, 112) is not first
    cost = measure(spec)
    assert cost.gflops == first.gflops
    assert cost.params == sum(p.numel() for p in build_model(spec).parameters())
    with pytest.raises(ValueError, match="resolution"):
        count_flops(spec, 8)
