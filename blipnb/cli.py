"""The `blipnb` command: run the notebook suite headless with papermill, train, caption a folder, or compare
evaluated runs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import runs
from .config import EvalConfig, GenerationConfig
from .errors import USER_ERRORS, MissingExtra, ModelUnavailable, ParameterError, require
from .notebook.params import NOTEBOOKS
from .presets import add_parameter_arguments, read_params
from .suite import default_notebook_dir, run_all, run_seeds
from .sweep import __doc__ as sweep_doc
from .sweep import add_arguments as add_sweep_arguments
from .train import add_arguments as add_train_arguments
from .train import train

def caption_decoding(model: str, **flags) -> GenerationConfig:
    """The decoding `blipnb caption` uses: the run's, saved with an exported model (decoding_defaults.json, what 02
    validated and 03 evaluated with), else the defaults; flags given (not None) win."""
    from .runtime.decoding import Decoding  # the same reading a deployed model does

    return GenerationConfig(**Decoding.load(model).settings()).merged(**flags)


def caption(args) -> int:
    """Caption every image in a folder with a model dir into CSV/JSONL; under torchrun each process captions its
    share of the images and rank 0 writes the file. Unreadable files are listed in <out>.skipped.jsonl.

    The folder, the output suffix and the model folder are checked before the model loads; a folder without
    images is a warning and exit code 1.
    """
    folder = Path(args.folder)
    if not folder.is_dir():
        raise ParameterError(f"{'not a folder' if folder.exists() else 'no such folder'}: {str(folder)!r}")
    out = runs.check_caption_output(args.out, "--out")
    check_model_argument(args.model)
    gen = caption_decoding(args.model, num_beams=args.num_beams, max_new_tokens=args.max_new_tokens,
                           prompt=args.prompt, consensus_samples=args.consensus_samples)
    from .model.generation import IMAGE_SUFFIXES, caption_folder, list_images

    total = len(list_images(folder))
    if not total:
        print(f"blipnb caption: warning: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}: nothing "
              f"captioned, {out} not written", file=sys.stderr)
        return 1
    from .model.modeling import load_model
    from .training.distributed import finish, is_main_process, launched, process_state

    try:
        model, processor = load_model(args.model, device=process_state().device if launched() else None)
    except (OSError, ValueError) as e:  # e.g. huggingface_hub's HFValidationError for a malformed id
        raise ModelUnavailable(f"could not load --model {args.model!r}: {str(e).splitlines()[0]}") from None
    report = caption_folder(folder, model, processor, gen, out)
    finish()
    if not is_main_process():
        return 0
    skipped_file = out.with_name(out.name + ".skipped.jsonl")
    if report["errors"]:
        runs.write_jsonl(skipped_file, [{"file_name": e["file_name"], "reason": e["error"]} for e in report["errors"]])
    else:
        skipped_file.unlink(missing_ok=True)  # a previous run's list would contradict this output
    print(f"captioned {report['n_captioned']} of {total} images into {report['out_path']}"
          + (f"; {len(report['errors'])} unreadable, listed in {skipped_file}" if report["errors"] else ""))
    for err in report["errors"][:10]:
        print(f"  skipped {err['file_name']}: {err['error']}", file=sys.stderr)
    return 0 if report["n_captioned"] else 1


def check_model_argument(model: str) -> None:
    """A ParameterError, before anything loads, if `model` names a local folder that is not a saved model; a name
    that is no local path is left to load_model as a hub id."""
    path = Path(model).expanduser()
    if path.exists():
        if runs.is_model_dir(path / runs.MODEL_DIR):  # a run directory (its config.json is blipnb's, not a model's)
            raise ParameterError(f"--model {model!r} is a run directory: pass its model folder, "
                                 f"{str(path / runs.MODEL_DIR)!r}")
        if not runs.is_model_dir(path):
            raise ParameterError(f"--model {model!r} is not a model folder (it has no config.json); pass a folder "
                                 f"that save_pretrained wrote, such as a run directory's {runs.MODEL_DIR}/")
        return
    # A hub id is "name" or "owner/name"; anything else, or a name under an existing folder, is meant as a path.
    parent = path.parent
    if (model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model
            or (str(parent) != "." and parent.is_dir())):
        raise ParameterError(f"--model {model!r}: no such folder (run 02_finetune, or `blipnb train`, to make one)")


def compare(args) -> int:
    """Score several runs on the same test images and write comparison.json, comparison.md and comparison.png."""
    from .evaluation.compare import compare_runs
    from .notebook.viz import plot_run_comparison

    out = Path(args.out)
    comparison = compare_runs(args.runs, out, n_boot=args.n_bootstrap, seed=args.seed, clip_model=args.clip_model)
    plot_run_comparison(comparison).savefig(out / runs.COMPARISON_FIGURE, dpi=120, bbox_inches="tight")
    print((out / runs.COMPARISON_REPORT).read_text())
    for name in (runs.COMPARISON_REPORT, runs.COMPARISON, runs.COMPARISON_FIGURE):
        print(f"  {out / name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `blipnb` command line: run-all, train, sweep, params, caption, compare, lab and serve."""
    parser = argparse.ArgumentParser(prog="blipnb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ra = sub.add_parser("run-all", help="execute notebooks 01-05 headless for one run directory")
    add_parameter_arguments(ra)
    ra.add_argument("--out", required=True, help="the run directory (executed notebooks go in its notebooks/)")
    ra.add_argument("--only", nargs="+", choices=NOTEBOOKS, help="run just these notebooks, in order")
    ra.add_argument("--notebooks", type=Path, default=None, help="folder holding the notebooks")
    ra.add_argument("--prepare-only", action="store_true", help="inject parameters without executing (nbval)")
    ra.add_argument("--seeds", default=None, help="train and evaluate once per seed (e.g. 0,1,2) into sibling run "
                    "directories OUT-seedN, then compare them in OUT-seeds (mean ± sd next to each seed's CI)")
    tr = sub.add_parser("train", help="notebook 02's training from a shell (also under torchrun / accelerate "
                                      "launch): -f/-p as run-all, run_dir among them")
    add_train_arguments(tr)
    sw = sub.add_parser("sweep", help="a hyperparameter sweep chosen on validation (optuna): trials as run "
                                      "directories, a study that resumes, the best as a preset, 03 on the best",
                        description=sweep_doc)
    add_sweep_arguments(sw)
    pp = sub.add_parser("params", help="list the parameters a notebook (or the suite) takes, with defaults and help")
    pp.add_argument("notebook", nargs="?", default=None, choices=NOTEBOOKS, metavar="NOTEBOOK",
                    help=f"one of {', '.join(NOTEBOOKS)} (default: all)")
    cp = sub.add_parser("caption", help="caption every image in a folder into CSV or JSONL")
    cp.add_argument("folder")
    cp.add_argument("--model", required=True, help="a model dir (e.g. runs/sample/model) or hub id")
    cp.add_argument("--out", required=True, help="output .csv or .jsonl")
    run = "default: the run's, saved with the model (decoding_defaults.json), else"
    defaults = GenerationConfig()
    cp.add_argument("--num-beams", type=int, help=f"{run} {defaults.num_beams}")
    cp.add_argument("--max-new-tokens", type=int, help=f"{run} {defaults.max_new_tokens}")
    cp.add_argument("--prompt", help=f"{run} {defaults.prompt!r}")
    cp.add_argument("--consensus-samples", type=int, help=f"{run} {defaults.consensus_samples} (0: off)")
    co = sub.add_parser("compare", help="score two or more evaluated runs on the same test images, with paired "
                                        "intervals and P(A beats B) for every pair")
    co.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories that 03_evaluate has scored")
    co.add_argument("--out", required=True, help="folder for comparison.json, comparison.md and comparison.png")
    scoring = EvalConfig()
    co.add_argument("--n-bootstrap", type=int, help=f"bootstrap resamples of images (default {scoring.n_bootstrap})")
    co.add_argument("--seed", type=int, help=f"seed of the resampling (default {scoring.bootstrap_seed})")
    co.add_argument("--clip-model", help=f"CLIP for CLIP-S and RefCLIP-S, a hub id or a folder ('': off; default "
                                         f"{scoring.clip_model})")
    lb = sub.add_parser("lab", help="JupyterLab on the notebooks, prepared with a preset's parameters in the run "
                                    "directory (make lab): prints the URL to open")
    lb.add_argument("-f", "--preset", default="sample", help="a preset's name or YAML file (default: sample, offline)")
    lb.add_argument("--out", default=None, help="the run directory (default: the preset's run_dir)")
    lb.add_argument("--port", type=int, default=8888, help="port on 127.0.0.1 (another free one if taken)")
    lb.add_argument("--no-browser", action="store_true", help="print the URL without opening a browser")
    lb.add_argument("--notebooks", type=Path, default=None, help="folder holding the notebooks")
    # Listed for --help only: main() hands `blipnb serve ...` to blipnb.serve, whose options need torch to build.
    sub.add_parser("serve", help="caption images over HTTP with dynamic batching: blipnb serve MODEL_DIR --port P "
                                 "(see blipnb serve --help)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["serve"]:
            require("litserve", "blipnb serve")
            from .serve import main as serve

            return serve(argv[1:])
        if argv[:1] == ["run-all"]:
            require("papermill", "blipnb run-all")
        if argv[:1] == ["lab"]:
            require("jupyterlab", "blipnb lab")
        if argv[:1] == ["sweep"]:
            require("optuna", "blipnb sweep")
    except MissingExtra as e:
        raise SystemExit(f"blipnb: {e}") from None
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "train":
        return train(args, extra, parser.error)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "sweep":
        from .sweep import sweep

        return sweep(args, parser.error)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "params":
        from .notebook.params import describe_parameters

        print(describe_parameters(args.notebook))
        return 0
    try:
        if args.command == "lab":
            from .lab import main as lab

            return lab(args)
        if args.command == "caption":
            return caption(args)
        if args.command == "compare":
            return compare(args)
        params = read_params(args.parameters_file, args.parameter)
    except USER_ERRORS as e:
        raise SystemExit(f"blipnb {args.command}: {e}") from None
    if args.seeds is not None:
        return run_seeds(params, Path(args.out), args.notebooks or default_notebook_dir(), args.only, args.seeds)
    return run_all(params, Path(args.out), args.notebooks or default_notebook_dir(), args.only, args.prepare_only)


if __name__ == "__main__":
    sys.exit(main())
