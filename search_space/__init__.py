"""Where attention goes: architecture specs, the attention blocks, the ResNet builder, the search space.

The spec and the space are plain data and import without torch (a notebook reading study results should
not pay for it); the modules that build networks load on first use. The attention kinds are listed once,
in `search_space.registry` (`kinds()`, `register`): see README, "Adding a block kind".
"""

from importlib import import_module
from typing import Any

from .space import SearchSpace, suggest
from .spec import GC, NL, SE, STAGES, ArchSpec, Attention, NoAttn, SpecError

_LAZY = {
    "GlobalContext": "blocks", "NonLocal": "blocks", "SqueezeExcite": "blocks",
    "make_block": "blocks", "reduced_channels": "blocks", "ResNet": "resnet", "build_model": "resnet",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "GC", "NL", "SE", "STAGES", "ArchSpec", "Attention", "GlobalContext", "NoAttn", "NonLocal",
    "ResNet", "SearchSpace", "SpecError", "SqueezeExcite", "build_model", "make_block", "reduced_channels",
    "suggest",
]
