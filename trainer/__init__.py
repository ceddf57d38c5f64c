"""Proxy training on ImageNet subsets: subsets, a preprocessed uint8 cache, the loop, the digits data.

Names are imported on first use (PEP 562): reading a study file needs `Schedule` and `SubsetSpec`, not
torch, so `attnas status`, `front` and `pick` start in a fraction of a second instead of ~3 s."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the trainer module that defines it.
_WHERE = {
    "BUILTIN": "builtin",
    "Cache": "cache",
    "Cancelled": "loop",
    "CheckpointError": "checkpoint",
    "DEVICES": "devices",
    "DataError": "subsets",
    "DeviceError": "devices",
    "EpochStats": "schedule",
    "ProxyResult": "schedule",
    "Schedule": "schedule",
    "ScheduleError": "schedule",
    "Start": "trunk",
    "SubsetCheck": "subsets",
    "SubsetSpec": "subsets",
    "TrunkError": "trunk",
    "ValResult": "final",
    "check_fits": "trunk",
    "check_subset": "subsets",
    "dataset_root": "builtin",
    "default_cache_dir": "subsets",
    "file_key": "trunk",
    "load_cache": "cache",
    "load_trunk": "trunk",
    "mean_result": "seeds",
    "proxy_train": "loop",
    "read_weights": "trunk",
    "resolve_device": "devices",
    "score_on_val": "final",
    "seed_schedules": "seeds",
    "single_run": "schedule",
    "split_subset": "subsets",
    "train_seeds": "seeds",
    "train_trunk": "trunk",
    "trunk_key": "trunk",
    "trunk_spec": "trunk",
    "val_items": "final",
    "write_digits_tree": "digits",
    "write_fashion_tree": "fashion",
}

if TYPE_CHECKING:
    from trainer.builtin import BUILTIN, dataset_root
    from trainer.cache import Cache, load_cache
    from trainer.checkpoint import CheckpointError
    from trainer.devices import DEVICES, DeviceError, resolve_device
    from trainer.digits import write_digits_tree
    from trainer.fashion import write_fashion_tree
    from trainer.final import ValResult, score_on_val, val_items
    from trainer.loop import Cancelled, proxy_train
    from trainer.schedule import EpochStats, ProxyResult, Schedule, ScheduleError, single_run
    from trainer.seeds import mean_result, seed_schedules, train_seeds
    from trainer.subsets import DataError, SubsetCheck, SubsetSpec, check_subset, default_cache_dir, split_subset
    from trainer.trunk import (
        Start,
        TrunkError,
        check_fits,
        file_key,
        load_trunk,
        read_weights,
        train_trunk,
        trunk_key,
        trunk_spec,
    )


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'trainer' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"trainer.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "BUILTIN",
    "DEVICES",
    "Cache",
    "Cancelled",
    "CheckpointError",
    "DataError",
    "DeviceError",
    "EpochStats",
    "ProxyResult",
    "Schedule",
    "ScheduleError",
    "Start",
    "SubsetCheck",
    "SubsetSpec",
    "TrunkError",
    "ValResult",
    "check_fits",
    "check_subset",
    "dataset_root",
    "default_cache_dir",
    "file_key",
    "load_cache",
    "load_trunk",
    "mean_result",
    "proxy_train",
    "read_weights",
    "resolve_device",
    "score_on_val",
    "seed_schedules",
    "single_run",
    "split_subset",
    "train_seeds",
    "train_trunk",
    "trunk_key",
    "trunk_spec",
    "val_items",
    "write_digits_tree",
    "write_fashion_tree",
]
