"""The training layer: Trainer wiring, validation by generating and scoring, caches that take work out of the loop.

It sits above the model and scoring layers and below run evaluation.
"""
from .trainer import best_metric_key, CaptionTrainer, build_trainer, forward_loss, train_model, training_arguments
from .validation import caption_and_score

__all__ = ["best_metric_key", "CaptionTrainer", "build_trainer", "caption_and_score", "forward_loss", "train_model",
           "training_arguments"]
