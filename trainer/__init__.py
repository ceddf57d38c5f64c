"""Proxy training on ImageNet subsets: subsets, a preprocessed uint8 cache, the loop, the digits data."""

from trainer.builtin import BUILTIN, dataset_root
from trainer.cache import Cache, load_cache
from trainer.checkpoint import CheckpointError
from trainer.devices import DEVICES, DeviceError, resolve_device
from trainer.digits import write_digits_tree
from trainer.fashion import write_fashion_tree
from trainer.final import ValResult, score_on_val, val_items
from trainer.loop import Cancelled, proxy_train
from trainer.schedule import EpochStats, ProxyResult, Schedule, ScheduleError
from trainer.seeds import mean_result, seed_schedules, single_run, train_seeds
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
