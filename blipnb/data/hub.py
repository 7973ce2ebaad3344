"""A dataset from the Hugging Face hub, or from its local copy (parquet files or save_to_disk output)."""
from __future__ import annotations

from pathlib import Path

from datasets import DatasetDict

from ..errors import DataSourceUnavailable, offline_hint


def load_hub(hub_id: str) -> DatasetDict:
    """A hub dataset (or a local directory of parquet files / save_to_disk output); offline -> DataSourceUnavailable."""
    from datasets import load_dataset, load_from_disk

    local = Path(hub_id).expanduser()
    if local.exists():  # a local copy: its errors are the user's to see unchanged
        return load_from_disk(str(local)) if (local / "dataset_dict.json").exists() else load_dataset(str(local))
    try:
        return load_dataset(hub_id)
    except Exception as e:
        raise DataSourceUnavailable(
            f"could not load dataset {hub_id!r} from the Hugging Face hub or the local cache "
            f"({type(e).__name__}: {e}). {offline_hint()}") from e
