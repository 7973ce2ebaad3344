"""Metrics beyond n-grams: degeneration (repeats, distinct-n, copies, length), object hallucination (CHAIR on the
sample and on COCO) and CLIP-S / RefCLIP-S on a tiny random CLIP, against direct computations and torchmetrics."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from datasets import Dataset
from helpers import tiny_clip, tiny_config
from PIL import Image

from blipnb.data.sample import ATTRIBUTES, parse_attributes
from blipnb.evaluation.grounding import coco_instances, grounding, object_truth
from blipnb.evaluation.report import format_report
from blipnb.evaluation.run import human_ceiling, score_beyond, summarise
from blipnb.notebook import analysis
from blipnb.runtime.decoding import Decoding, DecodingError
from blipnb.schema import (CAPTIONS, CHAIR_I, CHAIR_S, CLIP_S, COLOUR_ERRORS, COPIED, DISTINCT_1, IMAGE,
                           IMAGE_ID, LENGTH, METRIC_GROUPS, POSITION_ERRORS, REFCLIP_S, REPEATS, VOCABULARY)
from blipnb.scoring import sanity_check, score_captions
from blipnb.scoring.beyond import Grounding, add_beyond
from blipnb.scoring.bootstrap import bootstrap_cis, paired_comparison
from blipnb.scoring.degeneration import degeneration_scores, distinct, repeated_ngrams
from blipnb.scoring.embedding import PREFIX, W, embedding_scores
from blipnb.scoring.hallucination import COCO, SAMPLE, ObjectTruth, hallucination_scores
from blipnb.scoring.objects import coco_mentions

HAT = "a hat on top of a hat on top of a hat"


# ------------------------------------------------------------------------------------------- degeneration

def test_repetition_counts_a_looping_caption_and_not_repeated_function_words():
    assert "a hat" in repeated_ngrams(HAT) and "on top of" in repeated_ngrams(HAT)
    assert repeated_ngrams("ray ban ray ban sunglasses") == ["ray ban"]
    assert repeated_ngrams("a dog in the grass in the park") == []  # "in the" twice is not a loop
    per, corpus, missing = degeneration_scores({"a": HAT, "b": "a red circle", "c": "a dog in the grass in the park"})
    assert [per[k][REPEATS] for k in "abc"] == [1.0, 0.0, 0.0] and corpus[REPEATS] == pytest.approx(1 / 3)
    assert COPIED in missing and "training captions" in missing[COPIED]


def test_repetition_degenerate_caption_is_flagged_by_the_sanity_check_with_the_remedies(no_java):  # Java's metrics are not the point: the Python tokenizer
    refs = {"1": ["a man wearing a red hat", "a person in a hat"], "2": ["a dog on a sofa", "a brown dog lying down"]}
    captions = {"1": HAT, "2": "post post post post"}
    result = add_beyond(score_captions(captions, refs, do_spice=False), captions, refs)
    assert result["metrics"][REPEATS] == 1.0 and result["per_image"]["1"][REPEATS] == 1.0
    ceiling = {"metrics": {REPEATS: 0.0}}
    warnings = [w for w in sanity_check(result, "folder", ceiling=ceiling) if w.startswith(REPEATS)]
    assert len(warnings) == 1 and "repetition_penalty" in warnings[0] and "no_repeat_ngram_size" in warnings[0]
    # Not flagged when the references repeat as often: then it is how this data is written.
    assert not [w for w in sanity_check(result, "folder", ceiling={"metrics": {REPEATS: 1.0}}) if w.startswith(REPEATS)]


def test_distinct_vocabulary_copies_and_length_on_known_captions():
    captions = {"a": "a red circle", "b": "a red square", "c": "a red circle"}
    per, corpus, missing = degeneration_scores(captions, ["A red circle.", "a blue circle"])
    assert corpus[DISTINCT_1] == pytest.approx(4 / 9) and distinct(captions.values(), 2) == pytest.approx(3 / 6)
    assert corpus[VOCABULARY] == 4 and corpus[LENGTH] == 3.0
    assert [per[k][COPIED] for k in "abc"] == [1.0, 0.0, 1.0] and not missing  # case and final stop ignored


def test_repetition_penalty_and_no_repeat_ngram_size_are_decoding_settings_that_reach_generate():
    kw = Decoding().merged(repetition_penalty=1.3, no_repeat_ngram_size=3).generate_kwargs()
    assert kw["repetition_penalty"] == 1.3 and kw["no_repeat_ngram_size"] == 3
    plain = Decoding().generate_kwargs()
    assert "repetition_penalty" not in plain and "no_repeat_ngram_size" not in plain  # off: generate's own defaults
    with pytest.raises(DecodingError, match="no_repeat_ngram_size"):
        Decoding().merged(no_repeat_ngram_size=-1)


# ------------------------------------------------------------------------------------------- hallucination

def sample_split():
    """Three images of the sample's form: one red circle; a blue square and a green triangle; one yellow square."""
    objects = [
        [{"shape": "circle", "colour": "red", "size": "large", "position": "top left"}],
        [{"shape": "square", "colour": "blue", "size": "small", "position": "top right"},
         {"shape": "triangle", "colour": "green", "size": "large", "position": "bottom left"}],
        [{"shape": "square", "colour": "yellow", "size": "small", "position": "bottom right"}],
    ]
    attributes = [json.dumps({"count": len(o), "hard": False, "objects": o}) for o in objects]
    return Dataset.from_dict({IMAGE_ID: ["0", "1", "2"], CAPTIONS: [["a large red circle in the top left"],
                              ["a small blue square in the top right and a large green triangle in the bottom left"],
                              ["a small yellow square in the bottom right"]], ATTRIBUTES: attributes})


def test_hallucination_on_the_sample_counts_invented_shapes_apart_from_colour_and_position_errors():
    split = sample_split()
    truth, _ = object_truth(tiny_config("unused"), split)
    captions = {
        "0": "two shapes: a large red circle in the top left and a small purple circle in the bottom right",  # 1 extra
        "1": "a small blue square in the top right and a large red triangle in the bottom left",  # colour wrong
        "2": "a small yellow square in the top left",  # position wrong
    }
    refs = {k: v for k, v in zip(split[IMAGE_ID], split[CAPTIONS])}
    per, corpus, counts, missing = hallucination_scores(captions, refs, {k: k for k in captions}, truth)
    assert not missing and counts["mentioned"] == [2, 2, 1] and counts["hallucinated"] == [1, 0, 0]
    assert counts["invented"][0] == ["purple circle"]
    assert corpus[CHAIR_I] == pytest.approx(1 / 5) and corpus[CHAIR_S] == pytest.approx(1 / 3)
    assert corpus[COLOUR_ERRORS] == pytest.approx(1 / 4) and corpus[POSITION_ERRORS] == pytest.approx(1 / 4)


def test_hallucination_agrees_with_the_attribute_table_where_every_attribute_is_right(no_java):  # Java's metrics are not the point: the Python tokenizer
    split = sample_split()
    rows = [{"image_id": k, "prediction": p, "references": c} for k, p, c in zip(
        split[IMAGE_ID], ["a large red circle in the top left", "a small blue square in the top right",  # one left out
                          "one shape: a small yellow square in the bottom right and a red circle in the top left"],
        split[CAPTIONS])]
    assert analysis.fully_right(rows, split) == {"0"}  # 1 leaves a shape out; 2 describes a shape that is not there
    truth, _ = object_truth(tiny_config("unused"), split)
    result = add_beyond(score_captions({r["image_id"]: r["prediction"] for r in rows},
                                       {r["image_id"]: r["references"] for r in rows}, do_spice=False),
                        {r["image_id"]: r["prediction"] for r in rows}, {r["image_id"]: r["references"] for r in rows},
                        grounding=Grounding(truth=truth))
    assert [result["per_image"][k][CHAIR_S] for k in "012"] == [0.0, 0.0, 1.0]
    overall = analysis.attribute_accuracy(rows, split)[0]
    assert overall["all"] == pytest.approx(1 / 3)  # the extra shape makes image 2 not "all right", as CHAIR says


def test_hallucination_coco_words_synonyms_plurals_and_longer_names_first():
    assert coco_mentions("Two men riding motor bikes past a fire hydrant") == ["person", "motorcycle", "fire hydrant"]
    assert coco_mentions("a hot dog and a teddy bear on a dining table") == ["hot dog", "teddy bear", "dining table"]
    assert coco_mentions("an orange cat on a sofa") == ["cat", "couch"]  # orange the colour, not the fruit
    assert coco_mentions("two oranges and a knife") == ["orange", "knife"]
    assert coco_mentions("puppies and kittens") == ["dog", "cat"]


def test_hallucination_coco_from_instance_annotations_and_the_references(tmp_path):
    instances = {"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 18, "name": "dog"}, {"id": 62, "name": "chair"}],
                 "annotations": [{"image_id": 1, "category_id": 18}, {"image_id": 2, "category_id": 62}]}
    path = tmp_path / "instances_val2014.json"
    path.write_text(json.dumps(instances))
    split = Dataset.from_dict({IMAGE_ID: ["1", "2"], CAPTIONS: [["a dog on the grass"], ["a cat on a chair"]]})
    cfg = tiny_config(tmp_path / "run", source="coco_json", data_dir=str(tmp_path), annotations=str(path),
                      coco_instances=str(path))
    truth, why = object_truth(cfg, split)
    assert truth.kind == COCO and truth.by_image == {"1": {"dog"}, "2": {"chair"}} and not why
    captions = {"1": "a dog and a frisbee", "2": "a cat sitting on a chair"}  # the cat is in a reference: not invented
    refs = dict(zip(split[IMAGE_ID], split[CAPTIONS]))
    _, corpus, counts, missing = hallucination_scores(captions, refs, {k: k for k in captions}, truth)
    assert counts["invented"] == [["frisbee"], []] and corpus[CHAIR_I] == pytest.approx(1 / 4)
    assert corpus[CHAIR_S] == 0.5 and COLOUR_ERRORS in missing and POSITION_ERRORS in missing
    with pytest.raises(ValueError, match="names none of the split"):
        coco_instances([str(path)], {"999"})
    assert "coco_instances" in object_truth(tiny_config(tmp_path / "r", source="coco_json", data_dir=str(tmp_path),
                                                        annotations=str(path)), split)[1]


def test_hallucination_elsewhere_is_null_with_the_reason(no_java):  # Java's metrics are not the point: the Python tokenizer
    split = Dataset.from_dict({IMAGE_ID: ["a"], CAPTIONS: [["a dog"]]})
    truth, why = object_truth(tiny_config("unused", source="folder", data_dir="x"), split)
    assert truth is None and "does not say which objects" in why
    result = add_beyond(score_captions({"a": "a cat"}, {"a": ["a dog"]}, do_spice=False), {"a": "a cat"},
                        {"a": ["a dog"]}, grounding=Grounding(truth_reason=why))
    for key in METRIC_GROUPS["hallucination"]:
        assert result["metrics"][key] is None and result["unavailable"][key] == why


def test_hallucination_bootstrap_pools_counts_and_a_lower_share_wins(no_java):  # Java's metrics are not the point: the Python tokenizer
    split = sample_split()
    truth, _ = object_truth(tiny_config("unused"), split)
    refs = dict(zip(split[IMAGE_ID], split[CAPTIONS]))
    good = {k: r[0] for k, r in refs.items()}
    bad = {k: "a red circle and a blue triangle and a green square" for k in refs}

    def scored(captions):
        return add_beyond(score_captions(captions, refs, do_spice=False), captions, refs, grounding=Grounding(truth=truth))

    a, b = scored(good), scored(bad)
    ci = bootstrap_cis(b, n_boot=200)
    assert ci[CHAIR_I]["low"] <= b["metrics"][CHAIR_I] <= ci[CHAIR_I]["high"]
    assert ci[DISTINCT_1]["low"] is None and "whole set" in ci[DISTINCT_1]["note"]
    diff = paired_comparison(a, b, n_boot=200)[CHAIR_I]
    assert diff["diff"] < 0 and diff["p_a_wins"] == 1.0  # fewer inventions: A wins although its value is lower


# ------------------------------------------------------------------------------------------- CLIP-S

@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


def images_split(n=4):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)) for _ in range(n)]
    return Dataset.from_dict({IMAGE_ID: [str(i) for i in range(n)], IMAGE: images,
                              CAPTIONS: [["a red circle", "a big red circle"], ["two blue squares", "blue squares"],
                                         ["a green triangle", "one triangle"], ["a yellow square", "a square"]][:n]})


def test_clip_s_and_refclip_s_follow_the_paper_on_a_tiny_clip(clip_folder):
    from transformers import CLIPModel, CLIPProcessor

    from blipnb.model.clip import ClipEmbedder, load_clip

    split = images_split()
    embed = ClipEmbedder(*load_clip(str(clip_folder)), split)
    captions = {"0": "a red circle", "1": "a green square", "2": "two triangles", "3": "a hat"}
    refs = dict(zip(split[IMAGE_ID], split[CAPTIONS]))
    per, corpus = embedding_scores(captions, refs, {k: k for k in captions}, embed)
    # Directly, with the model's own calls.
    model, processor = CLIPModel.from_pretrained(clip_folder).eval(), CLIPProcessor.from_pretrained(clip_folder)
    with torch.no_grad():
        for k, caption in captions.items():
            image = model.get_image_features(**processor(images=split[int(k)][IMAGE], return_tensors="pt")).pooler_output
            texts = processor(text=[PREFIX + caption] + [PREFIX + r for r in refs[k]], return_tensors="pt", padding=True)
            text = model.get_text_features(**texts).pooler_output
            image, text = image / image.norm(dim=-1, keepdim=True), text / text.norm(dim=-1, keepdim=True)
            clip = W * max(float(image[0] @ text[0]), 0.0)
            best = max(max(float(text[0] @ text[j]) for j in range(1, len(text))), 0.0)
            ref = 2 * clip * best / (clip + best) if clip + best else 0.0
            assert per[k][CLIP_S] == pytest.approx(clip, abs=1e-5) and per[k][REFCLIP_S] == pytest.approx(ref, abs=1e-5)
    assert corpus[CLIP_S] == pytest.approx(np.mean([v[CLIP_S] for v in per.values()]))


def test_clip_s_agrees_with_torchmetrics_clipscore_after_its_scaling_and_applies_the_prefix(clip_folder):
    from torchmetrics.functional.multimodal import clip_score

    from blipnb.model.clip import ClipEmbedder, load_clip

    model, processor = load_clip(str(clip_folder))
    split = images_split()
    embed = ClipEmbedder(model, processor, split)

    class Unwrapped(torch.nn.Module):
        """torchmetrics 1.9 expects get_*_features to return tensors; transformers 5 returns a model output."""

        def __init__(self):
            super().__init__()
            self.inner, self.config = model, model.config

        def get_image_features(self, *args, **kwargs):
            return model.get_image_features(*args, **kwargs).pooler_output

        def get_text_features(self, *args, **kwargs):
            return model.get_text_features(*args, **kwargs).pooler_output

    captions = {"0": "a red circle", "1": "two blue squares", "2": "a green triangle", "3": "a yellow square"}
    refs = dict(zip(split[IMAGE_ID], split[CAPTIONS]))
    ours, _ = embedding_scores(captions, refs, {k: k for k in captions}, embed)
    plain, _ = embedding_scores(captions, refs, {k: k for k in captions}, embed, prefix="")
    for k, caption in captions.items():
        pixels = torch.from_numpy(np.asarray(split[int(k)][IMAGE])).permute(2, 0, 1)
        theirs = float(clip_score(pixels, PREFIX + caption, lambda: (Unwrapped(), processor)))  # 100 * max(cos, 0)
        assert ours[k][CLIP_S] == pytest.approx(W * theirs / 100, abs=1e-4)
        unprefixed = float(clip_score(pixels, caption, lambda: (Unwrapped(), processor)))
        assert plain[k][CLIP_S] == pytest.approx(W * unprefixed / 100, abs=1e-4)
    assert any(abs(ours[k][CLIP_S] - plain[k][CLIP_S]) > 1e-4 for k in captions)  # the prefix changes the score


def test_clip_from_a_folder_in_the_evaluation_and_null_with_the_reason_offline(clip_folder, tmp_path, no_java):  # Java's metrics are not the point: the Python tokenizer
    split = images_split()
    refs = dict(zip(split[IMAGE_ID], split[CAPTIONS]))
    preds = {k: r[0] for k, r in refs.items()}
    cfg = tiny_config(tmp_path / "run", clip_model=str(clip_folder))
    ground = grounding(cfg, split, progress=False)
    result = score_beyond(preds, score_captions(preds, refs, do_spice=False), split, ground)
    ceiling = human_ceiling(split, cfg, None, ground)
    assert result["metrics"][CLIP_S] is not None and ceiling["metrics"][REFCLIP_S] is not None
    assert summarise(result, cfg, ceiling)["ci"][CLIP_S]["low"] is not None

    offline = grounding(tiny_config(tmp_path / "run2"), split, progress=False)  # the default, a hub id: no hub here
    result = score_beyond(preds, score_captions(preds, refs, do_spice=False), split, offline)
    assert result["metrics"][CLIP_S] is None and "openai/clip-vit-base-patch32" in result["unavailable"][CLIP_S]
    report = format_report({"results": {"fine-tuned": summarise(result, cfg)}, "split": "test", "source": "sample"})
    assert "CLIP-S, RefCLIP-S unavailable (fine-tuned): needs the CLIP model" in report


def test_parse_attributes_is_what_the_sample_truth_describes_with():
    truth, _ = object_truth(tiny_config("unused"), sample_split())
    caption = "a small blue square in the top right and a large green triangle in the bottom left"
    assert truth.kind == SAMPLE and truth.describe(caption) == parse_attributes(caption)["objects"]
    with pytest.raises(ValueError, match="describe"):
        ObjectTruth(SAMPLE, {})


def test_repetition_and_diversity_of_captions_without_words_are_null_with_the_reason():
    per, corpus, missing = degeneration_scores({"a": "", "b": "..."})
    assert DISTINCT_1 not in corpus and missing[DISTINCT_1] == "the captions hold no word"
    assert corpus[REPEATS] == 0.0 and corpus[LENGTH] == 0.0
