"""blipnb: fine-tune and honestly evaluate BLIP image captioning; the notebooks' helper package.

The public names below load their module on first use (PEP 562), so `import blipnb` stays light and
`import blipnb.scoring` never pulls in torch.
"""
import importlib

from .version import __version__

_PUBLIC = {  # name -> the module that defines it
    "load_preset": "blipnb.presets",  # a papermill YAML preset (+ overrides) -> Config
    "build_config": "blipnb.config",  # flat parameters -> Config, checked
    "load_config": "blipnb.config",  # a run's config.json -> Config
    "load_captions": "blipnb.data",  # any source -> DatasetDict, one row per image
    "start_model": "blipnb.model.modeling",  # the model and processor a run starts from
    "train_model": "blipnb.training",  # train, then export into the run directory
    "caption_split": "blipnb.model.generation",  # one caption per image of a split, from pixels only
    "caption_folder": "blipnb.model.generation",  # a folder of images -> CSV or JSONL
    "score_captions": "blipnb.scoring",  # COCO metrics of captions against all their references
    "model_paths": "blipnb.evaluation",  # a run's fine-tuned export and the model it started from
    "load_models": "blipnb.evaluation",  # those models, ready to caption
    "evaluate_run": "blipnb.evaluation",  # score them on the test split, with CIs and the human ceiling
    "format_report": "blipnb.evaluation",  # the table notebook 03 prints
    "compare_runs": "blipnb.evaluation",  # several evaluated runs on the same test images, paired
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'blipnb' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
