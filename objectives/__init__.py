"""Scoring an architecture: FLOPs and parameters (no training), then proxy accuracy through the trainer."""

from .flops import Cost, FlopCount, count_flops, count_params, measure

__all__ = ["Cost", "FlopCount", "count_flops", "count_params", "measure"]
