"""The model card written next to the fine-tuned export: data, recipe, decoding, metrics with CIs, limitations."""
from __future__ import annotations

from pathlib import Path

from .. import runs
from ..config import Config
from ..schema import BLEU, CIDER, HUMAN_CEILING, METEOR
from ..scoring.ceiling import CEILING_LABEL
from .report import (DIRECTION_NOTE, format_value, markdown_table, report_rows, shared_warnings, table_notes,
                     unavailable_lines)
from .run import BASELINE, FINETUNED

_RECIPE = ("epochs", "learning_rate", "weight_decay", "lr_scheduler", "warmup_ratio", "batch_size",
           "grad_accum_steps", "label_smoothing", "finetune_method", "max_txt_len", "precision", "seed")
_LORA = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")  # listed when finetune_method is lora
_DECODING = ("num_beams", "max_new_tokens", "min_new_tokens", "length_penalty", "do_sample", "consensus_samples",
             "temperature", "repetition_penalty", "no_repeat_ngram_size", "prompt")


def decoding_differs_lines(metrics: dict) -> list[str]:
    """The card's warning when 03 decoded otherwise than 02 validated (the checkpoint was chosen on other captions)."""
    differs = metrics.get("decoding_differs_from_validation") or []
    if not differs:
        return []
    return [f"- **Decoding differs from validation:** {', '.join(differs)}. The checkpoint was chosen on captions "
            "decoded the run's way; these results use the settings above."]


def card_family(cfg: Config):
    """The run's captioner family: the one built from scratch, else the one its export's config.json names."""
    from ..runtime.families import family_named, family_of_folder

    if cfg.model.from_scratch:
        return family_named(cfg.model.family)
    return family_of_folder(Path(cfg.run_dir) / runs.MODEL_DIR) or family_named("blip")


def model_card(cfg: Config, metrics: dict, train_results: dict | None = None) -> str:
    """Markdown model card: data, split sizes, recipe, decoding, metrics with CIs, the baseline, limitations."""
    prov = metrics.get("provenance", {})
    result = metrics["results"][FINETUNED]
    family = card_family(cfg)
    lines = [
        "---", "library_name: transformers", "pipeline_tag: image-to-text",
        f"tags: [{family.name}, image-captioning, blipnb]",
        "---", "", f"# {family.title} captioner fine-tuned with blipnb on `{cfg.data.source}`", "",
        f"Started from `{metrics['models'].get(BASELINE, cfg.model.model_id)}`; written by blipnb "
        f"{metrics.get('blipnb_version')} (git {prov.get('git_commit') or 'unknown'}).", "",
        "## Data", "",
        f"- Source: `{cfg.data.source}`" + (f" ({cfg.data.data_dir})" if cfg.data.data_dir else ""),
        f"- Evaluated on the `{metrics['split']}` split: {metrics['n_images']} images, "
        f"{result['refs_per_image']['mean']:.2f} references per image (min {result['refs_per_image']['min']}).",
        f"- Split hash (sha256 of sorted image ids): `{metrics.get('split_hash')}`",
        "- Splits are by image: no image is in two splits (checked on ids and on perceptual hashes).", "",
        "## Training recipe", "",
        *recipe_lines(cfg),
    ]
    if train_results:
        lines += [f"- trained {train_results.get('global_step')} steps on {train_results.get('train_pairs')} "
                  f"(image, caption) pairs in {train_results.get('train_seconds')} s; checkpoint chosen by "
                  f"{train_results.get('best_metric_name')} on validation"]
        if train_results.get("trainable_share") is not None:
            lines += [f"- trainable parameters: {train_results.get('trainable_parameters')} "
                      f"({100 * train_results['trainable_share']:.2f}% of the model)"]
    lines += ["", "## Decoding", "", *[f"- {k}: {metrics['decoding'].get(k)!r}" for k in _DECODING],
              "- Captions are generated from pixels only (plus the fixed prompt above); no reference is ever fed in.",
              *decoding_differs_lines(metrics), "", "## Results", "",
              f"pycocoevalcap metrics on a 0–1 scale (sacreBLEU 0–100), tokenizer: {result['tokenizer']}. "
              "Brackets: 95% bootstrap CI over images; the difference is a paired bootstrap on the same images. "
              f"Beyond the n-gram metrics: CLIP-S and RefCLIP-S (embedding), CHAIR (objects named that are not in the "
              f"image) and degeneration (repeats, diversity, copies of training captions, length); {DIRECTION_NOTE}.",
              "", *markdown_table(report_rows(metrics)), ""]
    lines += human_ceiling_lines(metrics)
    lines += ["## Known limitations", ""]
    lines += [f"- {line}" for line in limitations(cfg, metrics)]
    lines += ["", *deploy_lines()]
    return "\n".join(lines) + "\n"


def human_ceiling_lines(metrics: dict) -> list[str]:
    """The "Human ceiling" section: what the references-vs-each-other column means, and the table's notes."""
    ceiling = metrics.get(HUMAN_CEILING)
    if not ceiling:
        return [f"- {note}" for note in table_notes(metrics)] + [""]
    shown = ", ".join(f"{key} {format_value(key, ceiling['metrics'].get(key))}" for key in (BLEU[3], METEOR, CIDER))
    return ["## Human ceiling", "",
            f"How well the dataset's own captions agree: {shown} (the `{CEILING_LABEL}` column). A model may beat it "
            "by reproducing the references' consensus phrasing; one far above it is usually copying references "
            "(the sanity check flags that).", "",
            *[f"- {note}" for note in table_notes(metrics)], ""]


def deploy_lines() -> list[str]:
    """The "Deploy" section: the folder runs as it is on Inference Endpoints, SageMaker and `blipnb serve`."""
    from ..model.deploy import RUNTIME_PACKAGE
    from ..runtime.decoding import DECODING_FILE, bounds

    settings = bounds()
    ranges = ", ".join(f"{k} {lo}–{hi}" for k, (kind, lo, hi) in settings.items() if kind in (int, float))
    call = ('{"inputs": "<base64 JPEG or PNG>", "parameters": {"num_beams": 3}}')
    return [
        "## Deploy", "",
        f"This folder deploys as it is. `{runs.HANDLER}` and `{runs.SAGEMAKER_ENTRY}` are the same thin entry point "
        f"into `{RUNTIME_PACKAGE}/` beside each (blipnb's runtime), which needs only torch, transformers, Pillow and "
        "numpy "
        f"(`{runs.REQUIREMENTS}`). A request carries the image itself, as bytes or base64; a URL is refused, "
        "because the endpoint never fetches anything. Decoding defaults to the settings above "
        f"(`{DECODING_FILE}`); a request may set {', '.join(settings)} in `parameters` "
        f"({ranges}). Bad input is answered with a one-sentence reason.", "",
        "- **Hugging Face Inference Endpoints**: push this folder to a model repository and create an endpoint from "
        f"it (task: Custom); it runs `EndpointHandler` from `{runs.HANDLER}` after installing `{runs.REQUIREMENTS}`. "
        f"Send JSON `{call}`, or the image bytes with `Content-Type: image/jpeg`; the answer is "
        '`[{"generated_text": "..."}]`.',
        "- **SageMaker**: pack the folder's contents, `code/` included, as `tar -czf model.tar.gz -C model .`, upload "
        "it to S3 and deploy it with the Hugging Face inference container (`HuggingFaceModel(model_data=...)`) or "
        f"the PyTorch one; both install `code/{runs.REQUIREMENTS}` and call `model_fn`, `input_fn`, `predict_fn` and "
        "`output_fn` from `code/inference.py`. Invoke with `ContentType` image/jpeg, image/png, application/x-image "
        "or application/json (as above).",
        "- **Your own machine**: `blipnb serve model --port 8000` (dynamic batching), then "
        "`curl -X POST localhost:8000/predict -H 'Content-Type: image/jpeg' --data-binary @photo.jpg`. Beyond "
        "127.0.0.1 (`--host 0.0.0.0`) it requires a key (`--api-key` or `BLIPNB_API_KEY`; requests send "
        "`Authorization: Bearer KEY`).",
    ]


def recipe_lines(cfg: Config) -> list[str]:
    """The training recipe as markdown list items; LoRA's rank, scale, dropout and targets when it was used."""
    keys = _RECIPE + (_LORA if cfg.train.finetune_method == "lora" else ())
    return [f"- {k}: {getattr(cfg.train, k)}" for k in keys]


def limitations(cfg: Config, metrics: dict) -> list[str]:
    """What a reader should know before trusting or reusing the numbers."""
    out = unavailable_lines(metrics["results"])
    out += [f"Sanity check ({', '.join(names)}): {w}" for w, names in shared_warnings(metrics).items()]
    if cfg.data.source == "sample":
        out.append("Trained and tested on blipnb's synthetic shapes dataset: it describes coloured shapes in image "
                   "quadrants and nothing else; its scores say nothing about real photographs.")
    if cfg.model.from_scratch:
        out.append(f"A tiny {card_family(cfg).title} built from scratch (not pretrained): a demonstration of the "
                   "pipeline, not a general captioner.")
    out.append("Metrics compare against the reference captions of one dataset; a correct caption phrased "
               "differently scores low. Look at the error analysis (notebook 04) before relying on a number.")
    return out


def write_model_card(cfg: Config, metrics: dict) -> Path:
    """Write MODEL_DIR/README.md from the run's metrics and training results."""
    run = runs.RunDir(cfg.run_dir)
    train_results = runs.read_json(run / runs.TRAIN_RESULTS) if (run / runs.TRAIN_RESULTS).exists() else None
    path = run / runs.MODEL_DIR / runs.MODEL_CARD
    return runs.write_text(path, model_card(cfg, metrics, train_results))
