"""The scoring layer: COCO caption metrics and bootstrap intervals; strings and numbers in, numbers out.

Nothing here imports torch or a model: it scores any captions, from blipnb or elsewhere.
"""
from .ceiling import score_ceiling
from .coco import METRIC_MODULE_PATH, MetricUnavailable, quick_scores, score_captions
from .meteor import MeteorScorer, prestart_meteor
from .sanity import PLAUSIBLE, sanity_check

__all__ = ["METRIC_MODULE_PATH", "MeteorScorer", "MetricUnavailable", "PLAUSIBLE", "prestart_meteor", "quick_scores",
           "sanity_check", "score_captions", "score_ceiling"]
