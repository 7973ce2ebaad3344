"""The human ceiling: each image's references scored against each other, leave one out, rotating.

For an image with k references, each reference in turn is the hypothesis and the other k-1 are its references,
so every reference is judged once. All (image, held-out reference) items are scored together by
`score_captions` (same tokenizer, same metrics, corpus statistics pooled over all items), and the bootstrap
resamples images, each bringing all its items (`stats["groups"]`), so the ceiling's CI covers the choice of test
images exactly as a model's does.

The model is scored against all k references and the ceiling against k-1. We keep it that way and say so under
the table rather than also scoring the model on the same (k-1)-reference subsets: against all k references is
the number every paper reports, and it is the comparison that exposes a leak (a copied reference stays among the
model's references in k-1 of the k subsets, which would hide most of it). With one reference fewer, BLEU and
METEOR of the ceiling are somewhat lower than a human's against k would be (fewer n-grams to match); CIDEr, an
average over references, moves little.
"""
from __future__ import annotations

from .coco import score_captions

CEILING_LABEL = "references vs each other"  # its column in 03's table and the model card
NO_CEILING = ("not computed: no image has two or more references, and the human ceiling scores each reference "
              "against the other references of its image")


def leave_one_out(references: dict) -> tuple[dict[str, str], dict[str, list[str]], dict[str, str]]:
    """(hypotheses, their references, their image) per (image, held-out reference); one-reference images drop."""
    hypotheses, held_out_refs, groups = {}, {}, {}
    for image_id, refs in references.items():
        if isinstance(refs, str) or len(refs) < 2:
            continue  # nothing to compare a single reference against
        for j, ref in enumerate(refs):
            item = f"{image_id}#{j}"  # '#' sorts before digits and letters: items stay in image order
            hypotheses[item], held_out_refs[item], groups[item] = ref, [*refs[:j], *refs[j + 1:]], str(image_id)
    return hypotheses, held_out_refs, groups


def score_ceiling(references: dict, **score_kwargs) -> dict:
    """score_captions of every reference against its image's other references (kwargs as score_captions, `meteor`
    included).

    `n_images` counts images (those with >= 2 references), `n_items` the scored (image, reference) items, and
    `refs_per_image` the references each held-out reference was scored against."""
    hypotheses, held_out_refs, groups = leave_one_out(references)
    if not hypotheses:
        raise ValueError(NO_CEILING)
    result = score_captions(hypotheses, held_out_refs, **score_kwargs)
    result["stats"]["groups"] = [groups[i] for i in result["stats"]["image_ids"]]
    result["n_items"], result["n_images"] = result["n_images"], len(set(groups.values()))
    return result
