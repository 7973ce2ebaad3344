"""COCO caption metrics as an `evaluate` module: evaluate.load(blipnb.scoring.METRIC_MODULE_PATH)."""

import datasets
import evaluate

from blipnb.scoring import score_captions

_DESCRIPTION = """\
pycocoevalcap BLEU-1..4, METEOR, ROUGE-L, CIDEr and SPICE (0-1 scale) plus sacreBLEU corpus BLEU (0-100),
each caption scored against all of its references (PTB tokenisation, Python fallback without Java). A
metric that cannot run here is None, and `unavailable` says why. This is blipnb.scoring.score_captions.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: one generated caption per image (list of str).
    references: all reference captions of each image (list of list of str, at least one each).
    do_spice: run SPICE (needs Java and Stanford CoreNLP, which it downloads on first use). Default True.
    spice_subsample: SPICE on at most this many images, chosen with `seed`. Default 1500.
    seed: seed of the SPICE subsample. Default 0.
Returns:
    Bleu_1..Bleu_4, METEOR, ROUGE_L, CIDEr, SPICE, sacreBLEU (float or None), unavailable (dict of reasons),
    tokenizer (str).
Examples:
    >>> metric = evaluate.load(blipnb.scoring.METRIC_MODULE_PATH)
    >>> metric.compute(predictions=["a dog runs"], references=[["a dog is running", "a brown dog"]])
"""

_CITATION = """\
@inproceedings{chen2015microsoft, title={Microsoft COCO Captions: Data Collection and Evaluation Server},
  author={Chen, Xinlei and others}, year={2015}, booktitle={arXiv:1504.00325}}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CocoCaption(evaluate.Metric):
    """COCO caption metrics (blipnb.scoring) behind the `evaluate` interface."""

    def _info(self):
        """Describe the inputs: one prediction string and a list of reference strings per image."""
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
            codebase_urls=["https://github.com/salaniz/pycocoevalcap"],
        )

    def _compute(self, predictions, references, do_spice=True, spice_subsample=1500, seed=0):
        """Score with blipnb.scoring.score_captions; rows are numbered as images."""
        ids = [str(n) for n in range(len(predictions))]
        result = score_captions(
            dict(zip(ids, predictions)), {i: list(r) for i, r in zip(ids, references)},
            do_spice=do_spice, spice_subsample=spice_subsample, seed=seed,
        )
        return {**result["metrics"], "unavailable": result["unavailable"], "tokenizer": result["tokenizer"]}
