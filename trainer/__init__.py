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
from trainer.seeds import mean_result, seed_schedules, train_seeds
from trainer.subsets import DataError, SubsetCheck, SubsetSpec, check_subset, default_cache_dir, split_subset

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
    "SubsetCheck",
    "SubsetSpec",
    "ValResult",
    "check_subset",
    "dataset_root",
    "default_cache_dir",
    "load_cache",
    "mean_result",
    "proxy_train",
    "resolve_device",
    "score_on_val",
    "seed_schedules",
    "split_subset",
    "train_seeds",
    "val_items",
    "write_digits_tree",
    "write_fashion_tree",
]
