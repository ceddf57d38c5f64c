"""Scoring an architecture: FLOPs and parameters (no training), then proxy accuracy through the trainer."""

from .flops import Cost, FlopCount, count_flops, count_params, measure
from .scoring import Scores, evaluate

__all__ = ["Cost", "FlopCount", "Scores", "count_flops", "count_params", "evaluate", "measure"]
