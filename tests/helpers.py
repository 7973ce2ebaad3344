"""Small builders shared by tests: a tiny sample dataset and a tiny BLIP, both offline and fast."""
from __future__ import annotations

from blipnb.config import build_config
from blipnb.config.training import FROM_SCRATCH

# Seconds-long settings; scores from these mean nothing, only that the code paths run and connect.
TINY = dict(source="sample", sample_train=48, sample_validation=12, sample_test=12, sample_max_shapes=1,
            from_scratch=True, hidden_size=64, num_layers=1, num_heads=2, image_size=32, patch_size=16,
            vocab_size=120, epochs=1, learning_rate=1e-3, batch_size=16, eval_batch_size=16,
            grad_accum_steps=1, gradient_checkpointing=False, logging_steps=1, eval_max_images=12,
            precision="fp32", num_beams=1, max_new_tokens=10, do_spice=False, n_bootstrap=50,
            report_to="none", attn_implementation="eager")


# Enough data and steps for the tiny model to really learn the sample, where things are included (see the `trained`
# fixture in conftest): batch 16 gives twice the steps of 32 for the same work, and position needs the steps.
LEARN = dict(sample_train=150, sample_validation=24, sample_test=24, hidden_size=96, num_layers=2, num_heads=4,
             image_size=32, epochs=6, batch_size=16, learning_rate=2e-3, lr_scheduler="cosine", max_new_tokens=16,
             logging_steps=10, eval_max_images=24)


def tiny_config(run_dir, **overrides):
    """A Config for a seconds-long run in `run_dir`."""
    params = {**TINY, "run_dir": str(run_dir), **overrides}
    if not params["from_scratch"]:  # a model loaded from a folder brings its own sizes: TINY's would be refused
        params = {k: v for k, v in params.items() if k not in FROM_SCRATCH or k in overrides}
    return build_config(params)


def without_dropout(model_dir):
    """Set every dropout and drop-path probability in a saved model's config.json to 0: two processes draw other
    masks than one, so an exact equivalence between them holds only without them."""
    import json
    from pathlib import Path

    path = Path(model_dir) / "config.json"

    def zeroed(node):
        if isinstance(node, dict):
            return {k: 0.0 if "drop" in k and isinstance(v, float) else zeroed(v) for k, v in node.items()}
        return node

    path.write_text(json.dumps(zeroed(json.loads(path.read_text())), indent=2))
    return model_dir


def tiny_clip(folder):
    """A tiny random CLIP (CLIPConfig, a character-level CLIP tokenizer, the PIL image processor) saved in `folder`,
    loadable with from_pretrained like openai/clip-vit-base-patch32. Returns the folder."""
    import string

    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

    letters = list(string.ascii_lowercase + string.digits + "'")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    vocab |= {c: i for i, c in enumerate(letters, len(vocab))}
    vocab |= {c + "</w>": i for i, c in enumerate(letters, len(vocab))}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    images = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder
