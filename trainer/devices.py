"""Which torch device a run uses, decided once and up front (before any data is read or storage touched).

A typo (`tpu`) or a GPU that is not there must fail in the first second with one line naming the fix, not
minutes later inside a trial as a torch traceback. The CLI (`attnas train --device`) and the studies worker
(a study file's `device`) both call `resolve_device`, so they accept and refuse the same names.
"""

from __future__ import annotations

import re

import torch

#: The names accepted (`cuda:N` picks one GPU). "auto" is CUDA when present, else the CPU.
DEVICES = ("cpu", "cuda", "auto")


class DeviceError(ValueError):
    """A known device that this machine does not have (CUDA requested, none visible): not a typo."""


def resolve_device(name: str, option: str = "--device") -> str:
    """The device to train on: 'cpu', 'cuda' or 'cuda:N' ('auto' resolved).

    Raises a plain ValueError for a name that is no device at all (a usage mistake: the CLI exits 2), and
    DeviceError (a ValueError too) when CUDA is asked for but torch sees none, or the GPU index is beyond
    the visible count.
    `option` is how the message names the setting ("--device", "study file `device`").
    """
    name = name.strip().lower()
    if name not in DEVICES and not re.fullmatch(r"cuda:\d+", name):
        raise ValueError(f"{name!r} is not a device; use {option} {'|'.join(DEVICES)} (or cuda:N)")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if not torch.cuda.is_available():
        raise DeviceError(f"{option} {name}: CUDA requested but torch.cuda.is_available() is False; "
                          f"use {option} cpu or auto")
    index = int(name.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise DeviceError(f"{option} {name}: only {torch.cuda.device_count()} GPU(s) visible "
                          f"(CUDA_VISIBLE_DEVICES); use {option} cuda:0 or auto")
    return name
