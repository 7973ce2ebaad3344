"""Publishing a run's export (model, processor, model card) to the Hugging Face hub."""
from __future__ import annotations

from .. import runs
from ..config import Config


def push_export(cfg: Config) -> str:
    """Upload the export folder (model, processor, card) to cfg.hub.hub_model_id; returns the repo URL."""
    from huggingface_hub import HfApi

    folder = runs.RunDir(cfg.run_dir) / runs.MODEL_DIR
    api = HfApi()
    try:
        api.create_repo(cfg.hub.hub_model_id, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=cfg.hub.hub_model_id,
                          ignore_patterns=["training_args.bin"], commit_message="blipnb export")
    except Exception as e:  # offline, no token, no permission: one clear message
        raise RuntimeError(f"push_to_hub to {cfg.hub.hub_model_id!r} failed: {type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''}. The export stays in {folder}.") from e
    return f"https://huggingface.co/{cfg.hub.hub_model_id}"
