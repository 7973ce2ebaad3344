"""Where the captioned images come from and how they are split (01 and 02)."""
from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Optional

from ..errors import ParameterError
from .base import at_least, in_range, one_of, param, positive_or_none

SOURCES = ("sample", "folder", "coco_json", "flickr8k", "flickr8k_rows", "coco_karpathy")
NEAR_DUPLICATE_ACTIONS = ("warn", "drop", "fail")
BAD_DATA_ACTIONS = ("fail", "skip")


@dataclass
class DataConfig:
    """Where the captioned images come from and how they are split."""

    source: str = param("flickr8k", "sample, folder, coco_json, flickr8k, flickr8k_rows or coco_karpathy")
    data_dir: Optional[str] = param(None, "images folder (folder, coco_json), COCO root (coco_karpathy) or sample "
                                          "output dir")
    annotations: Optional[str] = param(None, "COCO captions JSON (coco_json) or Karpathy dataset_coco.json "
                                             "(coco_karpathy)")
    hub_id: Optional[str] = param(None, "override the hub dataset id of a hub source")
    split_seed: int = param(42, "seeds the image-level split where the source has none (also 01's gallery)")
    val_fraction: float = param(0.05, "share of images for validation where the source has no split")
    test_fraction: float = param(0.05, "share of images for test where the source has no split")
    max_train_samples: Optional[int] = param(None, "cap on train images, for quick runs")
    max_eval_samples: Optional[int] = param(None, "cap on validation and test images")
    near_duplicates: str = param("warn", "near-duplicate images across splits: warn (keep), drop (the held-out "
                                         "copy) or fail")
    on_bad_data: str = param("fail", "unusable rows or images (missing, unreadable, too large, empty caption): fail "
                                     "(list them all and stop) or skip (go on without them, listed in skipped.jsonl)")
    corrections: Optional[str] = param(None, "a corrections.jsonl to apply to the references (04 records one in the "
                                             "run directory); the data folder itself is never changed")
    max_image_pixels: Optional[int] = param(50_000_000, "largest image (width x height) accepted, read from its "
                                                        "header before decoding (None: Pillow's own limit only)")
    encoding: str = param("utf-8", "text encoding of metadata.csv/.jsonl and annotation files, e.g. latin-1, "
                                   "cp1252")
    sample_train: int = param(2000, "sample source: train images")
    sample_validation: int = param(200, "sample source: validation images")
    sample_test: int = param(200, "sample source: test images")
    sample_image_size: int = param(64, "sample source: image side in pixels")
    sample_max_shapes: int = param(2, "sample source: up to this many shapes per image")
    sample_hard_fraction: float = param(0.1, "sample source: share of noisy, cluttered images")
    sample_seed: int = param(0, "sample source: generator seed")

    def __post_init__(self):
        one_of("source", self.source, SOURCES)
        one_of("near_duplicates", self.near_duplicates, NEAR_DUPLICATE_ACTIONS)
        one_of("on_bad_data", self.on_bad_data, BAD_DATA_ACTIONS)
        positive_or_none("max_image_pixels", self.max_image_pixels)
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ParameterError(f"parameter 'encoding' names no known text encoding: {self.encoding!r} "
                                 "(e.g. 'utf-8', 'latin-1', 'cp1252')") from None
        for name in ("val_fraction", "test_fraction", "sample_hard_fraction"):
            in_range(name, getattr(self, name), 0.0, 1.0)
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ParameterError("val_fraction + test_fraction must leave some images for training")
        for name in ("max_train_samples", "max_eval_samples"):
            positive_or_none(name, getattr(self, name))
        for name in ("sample_train", "sample_validation", "sample_test"):
            at_least(name, getattr(self, name), 1)
        at_least("sample_image_size", self.sample_image_size, 16)
        at_least("sample_max_shapes", self.sample_max_shapes, 1)
        if self.source in ("folder", "coco_json") and not self.data_dir:
            raise ParameterError(f"source={self.source!r} needs data_dir (the folder holding the images)")
        if self.source == "coco_json" and not self.annotations:
            raise ParameterError("source='coco_json' needs annotations (the COCO captions JSON file)")
        if self.source == "coco_karpathy" and not self.data_dir:
            raise ParameterError("source='coco_karpathy' needs data_dir (the COCO root with train2014/ and val2014/)")
