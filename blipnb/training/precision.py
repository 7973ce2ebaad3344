"""What the first training step really computed in, against the precision asked for: recorded in the train results,
and said in one line when a part of the model ran otherwise."""
from __future__ import annotations

import contextlib

from transformers import TrainerCallback

from ..model.precision import dtype_name, observed_dtypes
from ..runtime.families import family_of
from .distributed import is_main_process


class PrecisionCheck(TrainerCallback):
    """Hooks a linear layer of the vision tower and of the language side for the first training step, then
    removes them. `observed` is {"vision": "bf16" | ... | None (did not run: cached embeddings), "decoder": ...}."""

    def __init__(self, asked: str):
        self.asked, self.observed, self._stack = asked, None, None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._stack = contextlib.ExitStack()
        self._seen = self._stack.enter_context(observed_dtypes(model, family_of(model).vision_tower(model)))

    def on_step_end(self, args, state, control, **kwargs):
        if self._stack is None:
            return
        self._stack.close()
        self._stack = None
        self.observed = {part: dtype_name(dtype) for part, dtype in self._seen.items()}
        if (line := self.mismatch()) and is_main_process():
            print(line)

    def on_train_end(self, args, state, control, **kwargs):
        if self._stack is not None:  # no step was taken (resumed at the end): nothing observed
            self._stack.close()
            self._stack = None

    def mismatch(self) -> str | None:
        """One line naming the parts that computed in another dtype than asked, or None."""
        off = {part: dtype for part, dtype in (self.observed or {}).items() if dtype not in (None, self.asked)}
        if not off:
            return None
        parts = ", ".join(f"the {'vision tower' if p == 'vision' else 'language model'} in {d}" for p, d in off.items())
        return (f"precision {self.asked} asked, but the first training step computed {parts}: that part trains "
                "slower (or less exactly) than asked")
