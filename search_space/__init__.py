"""Where attention goes: architecture specs, the attention blocks, the ResNet builder, the search space."""

from .blocks import BLOCKS, GlobalContext, NonLocal, SqueezeExcite, make_block, reduced_channels
from .resnet import ResNet, build_model
from .space import SearchSpace, suggest
from .spec import GC, NL, SE, STAGES, ArchSpec, Attention, NoAttn, SpecError

__all__ = [
    "BLOCKS", "GC", "NL", "SE", "STAGES", "ArchSpec", "Attention", "GlobalContext", "NoAttn", "NonLocal",
    "ResNet", "SearchSpace", "SpecError", "SqueezeExcite", "build_model", "make_block", "reduced_channels",
    "suggest",
]
