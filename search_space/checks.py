"""The error every bad spec or space raises, and the field checks the attention kinds share.

Kept apart from `spec.py` so a kind's module can use them without importing the spec (which reads the
registry, which imports the kinds): one direction of imports, no cycles.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

#: How an attention block's output t joins its input x: `add` (x + t) or `scale` (x * sigmoid(t)).
Fusion = Literal["add", "scale"]


class SpecError(ValueError):
    """An architecture or search space that cannot be built; the message names the field and the fix."""


def check_choice(where: str, value: Any, literal: Any) -> None:
    """Refuse `value` unless it is one of the `Literal` type's values."""
    allowed = get_args(literal)
    if value not in allowed:
        raise SpecError(f"{where}: {value!r} is not one of {', '.join(map(repr, allowed))}")


def check_int(where: str, value: Any, low: int = 1) -> None:
    """Refuse anything but a whole number >= `low` (bools included: True is not a ratio)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SpecError(f"{where}: {value!r} must be a whole number >= {low}")


def check_fraction(where: str, value: Any, example: str = "0.5") -> None:
    """Refuse anything but a number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise SpecError(f"{where}: {value!r} must be a fraction in (0, 1], e.g. {example}")


def check_bool(where: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise SpecError(f"{where}: {value!r} must be true or false")


def check_ratio(where: str, ratio: int, channels: int) -> None:
    """Refuse a reduction ratio that leaves a C/r bottleneck of no channels (SE, GC)."""
    if ratio > channels:
        raise SpecError(f"{where}.ratio: {ratio} is larger than the stage's {channels} channels; "
                        f"use a ratio <= {channels}")
