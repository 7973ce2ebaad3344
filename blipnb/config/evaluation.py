"""Decoding and everything after training: scoring (03), the decoding sweep, the error analysis (04), publishing
and the demo (05)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from ..errors import ParameterError
from ..runs import CAPTION_SUFFIXES, check_caption_output
from ..runtime.decoding import Decoding, DecodingError
from ..schema import PER_IMAGE_KEYS, SPLITS
from .base import at_least, one_of, param, parse_list, positive_or_none


@dataclass
class GenerationConfig(Decoding):
    """Decoding (every setting's default, help and bounds live in blipnb.runtime.decoding.Decoding, the one value
    all captioning takes) and how many images one generate call holds."""

    gen_batch_size: int = param(64, "images per generate call")

    def __post_init__(self):
        try:
            super().__post_init__()
        except DecodingError as e:
            raise ParameterError(f"parameter {e}") from None
        at_least("gen_batch_size", self.gen_batch_size, 1)

    def merged(self, **explicit) -> "GenerationConfig":
        """A validated copy with the `explicit` settings on top (None: not given): they always win, and
        min_new_tokens shrinks to fit a shorter max_new_tokens unless it was given too."""
        explicit = {k: v for k, v in explicit.items() if v is not None}
        batch = explicit.pop("gen_batch_size", self.gen_batch_size)
        try:
            merged = Decoding.merged(self, **explicit)
        except DecodingError as e:
            raise ParameterError(f"parameter {e}") from None
        return dataclasses.replace(merged, gen_batch_size=batch)


@dataclass
class EvalConfig:
    """Scoring on the reported split, and the trust checks around it (03)."""

    eval_split: str = param("test", "split to report on (choose anything on validation, report on test)")
    do_spice: bool = param(True, "try SPICE (needs Stanford CoreNLP, which it downloads; unavailable offline)")
    spice_subsample: int = param(1500, "images scored by SPICE (it is slow)")
    n_bootstrap: int = param(1000, "bootstrap resamples of images for the 95% CIs")
    bootstrap_seed: int = param(0, "seed of the resampling")
    plausible_bleu4: Optional[float] = param(None, "override the source's plausible BLEU-4 ceiling of the "
                                                   "sanity check")
    compare_with: str = param("", "other evaluated run directories to compare with on the same test images, "
                                  "comma-separated, as blipnb compare does ('': none)")
    plausible_cider: Optional[float] = param(None, "override the source's plausible CIDEr ceiling of the "
                                                   "sanity check")
    clip_model: str = param("openai/clip-vit-base-patch32", "CLIP for CLIP-S and RefCLIP-S: a hub id or a local "
                                                            "folder ('': off)")
    coco_instances: str = param("", "COCO instance annotations (instances_*.json; comma-separated for several) for "
                                    "object hallucination (CHAIR) on coco_karpathy or coco_json ('': none)")

    def __post_init__(self):
        one_of("eval_split", self.eval_split, SPLITS)
        at_least("spice_subsample", self.spice_subsample, 1)
        at_least("n_bootstrap", self.n_bootstrap, 0)

    def instance_files(self) -> list[str]:
        """coco_instances as a list of files."""
        return [path.strip() for path in self.coco_instances.split(",") if path.strip()]

    def comparison_runs(self) -> list[str]:
        """compare_with as a list of run directories."""
        return [path.strip() for path in self.compare_with.split(",") if path.strip()]


@dataclass
class SweepConfig:
    """A decoding sweep on validation (03): the best setting is then used on test."""

    sweep_num_beams: str = param("", "comma-separated beams, e.g. '1,3,5' (all three sweep lists empty: no sweep)")
    sweep_length_penalty: str = param("", "comma-separated length penalties, e.g. '0.8,1.0,1.2'")
    sweep_max_new_tokens: str = param("", "comma-separated caption lengths in tokens, e.g. '15,20,30'")
    sweep_max_images: Optional[int] = param(500, "validation images captioned per sweep setting, a random sample "
                                                  "seeded by split_seed (None: all)")

    def __post_init__(self):
        self.grid()  # every list parses
        positive_or_none("sweep_max_images", self.sweep_max_images)

    def grid(self) -> dict[str, list]:
        """The swept decoding settings (GenerationConfig names -> values); empty when there is no sweep."""
        grid = {"num_beams": parse_list("sweep_num_beams", self.sweep_num_beams, int),
                "length_penalty": parse_list("sweep_length_penalty", self.sweep_length_penalty, float),
                "max_new_tokens": parse_list("sweep_max_new_tokens", self.sweep_max_new_tokens, int)}
        return {k: v for k, v in grid.items() if v}


@dataclass
class AnalysisConfig:
    """The error analysis (04)."""

    k_examples: int = param(8, "images in each worst / best gallery")
    score_key: str = param("CIDEr", "per-image metric that ranks images and slices")
    min_slice_size: int = param(20, "images whose references mention a word before that word is a slice")
    compare_run: Optional[str] = param(None, "another evaluated run directory: the images where the two captioners "
                                             "disagree most (None: none)")

    def __post_init__(self):
        at_least("k_examples", self.k_examples, 1)
        at_least("min_slice_size", self.min_slice_size, 1)
        one_of("score_key", self.score_key, PER_IMAGE_KEYS)  # there is no per-image sacreBLEU to rank by


@dataclass
class HubConfig:
    """Publishing the export to the Hugging Face hub (03)."""

    push_to_hub: bool = param(False, "upload the export and its model card (needs the network and a token)")
    hub_model_id: Optional[str] = param(None, "hub repo for push_to_hub, e.g. me/blip-flickr8k")

    def __post_init__(self):
        if self.push_to_hub and not self.hub_model_id:
            raise ParameterError("push_to_hub=True needs hub_model_id (e.g. 'me/blip-flickr8k')")


@dataclass
class DemoConfig:
    """The inference demo (05): which image to show and which folder to caption to a file."""

    image_path: Optional[str] = param(None, "image for the static comparison (None: the first test image)")
    caption_folder_path: Optional[str] = param(None, "folder of images to caption (None: the folder holding the "
                                                     "test images)")
    caption_output: str = param("captions.csv", f"{' or '.join(CAPTION_SUFFIXES)}; a relative path is inside "
                                                "run_dir")

    def __post_init__(self):
        for name in ("image_path", "caption_folder_path"):
            if getattr(self, name) == "":
                raise ParameterError(f"parameter {name!r} must be a path or None, got ''")
        check_caption_output(self.caption_output, "caption_output")
