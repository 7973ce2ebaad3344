"""Run evaluation: evaluate a run (test split, baseline, decoding sweep), compare runs, the model card, the report
formatter."""
from .card import model_card, write_model_card
from .compare import compare_runs
from .publish import push_export
from .report import format_report, format_value, report_rows
from .run import (BASELINE, FINETUNED, baseline_id, evaluate_run, load_models, model_paths, prediction_rows, score_model,
                  summarise, track)
from .sweep import apply_decoding, decoding_sweep

__all__ = ["BASELINE", "FINETUNED", "apply_decoding", "baseline_id", "compare_runs", "decoding_sweep", "evaluate_run",
           "format_report", "format_value", "load_models", "model_card", "model_paths", "prediction_rows", "push_export", "report_rows",
           "score_model", "summarise", "track", "write_model_card"]
