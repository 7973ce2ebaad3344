"""`python -m blipnb.train -f preset.yaml -p name value ...` (also `blipnb train`): notebook 02's training, from a
shell, under `torchrun` / `accelerate launch` (one process per GPU), or as a SageMaker training job.

On SageMaker (SM_* variables set) the hyperparameters (SM_HPS) are parameters, the train or data channel is
data_dir unless a parameter names it, and the export is copied to SM_MODEL_DIR.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from . import runs
from .config import build_config, check_known
from .errors import USER_ERRORS
from .presets import add_parameter_arguments, read_params

PROG = "blipnb train"


def build_parser() -> argparse.ArgumentParser:
    """The options of `blipnb train`: run-all's -f and -p."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_parameter_arguments(parser)


def sagemaker_hyperparameters(env: dict) -> dict:
    """SageMaker's hyperparameters (SM_HPS, JSON); a value the SDK sent as a string ("2", "true") is read as JSON
    where it parses, so "2" is 2 but "no" stays "no"."""
    hps = json.loads(env.get("SM_HPS") or "{}")
    check_known(hps, where="SageMaker's hyperparameters (SM_HPS)")
    return {k: _json_or_text(v) for k, v in hps.items()}


def _json_or_text(value):
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def sagemaker_data_dir(env: dict) -> str | None:
    """The data channel SageMaker mounted (SM_CHANNEL_TRAIN, else SM_CHANNEL_DATA), if any."""
    return env.get("SM_CHANNEL_TRAIN") or env.get("SM_CHANNEL_DATA") or None


def resolve(args, env: dict):
    """The validated Config from the files, SageMaker's variables, then the -p overrides (later wins)."""
    params = {**read_params(args.parameters_file), **sagemaker_hyperparameters(env),
              **read_params((), args.parameter)}
    channel = sagemaker_data_dir(env)
    if channel and params.get("data_dir") is None:
        params["data_dir"] = channel
    return build_config(params)


def main(argv: list[str] | None = None) -> int:
    """`python -m blipnb.train ...`."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    return train(args, extra, parser.error)


def train(args, extra: list[str], error) -> int:
    """Train one run directory from parsed -f/-p options; a parameter or data error exits with one line."""
    env = dict(os.environ)
    # SageMaker also passes each hyperparameter as `--name value`: those are read from SM_HPS instead.
    hps = set(json.loads(env.get("SM_HPS") or "{}"))
    if extra and (not hps or any(a.startswith("--") and a[2:].split("=")[0] not in hps for a in extra)):
        error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        cfg = resolve(args, env)  # before torch loads: a mistyped parameter fails at once
    except USER_ERRORS as e:
        raise SystemExit(f"{PROG}: {e}") from None
    from .training.distributed import finish, is_main_process
    from .training.run import launches_torchrun, train_run

    try:
        results = train_run(cfg)
    except USER_ERRORS as e:
        raise SystemExit(f"{PROG}: {e}") from None
    finally:
        finish()
    if is_main_process() and not launches_torchrun(cfg):  # (else the processes it started did this)
        if env.get("SM_MODEL_DIR"):
            shutil.copytree(Path(cfg.run_dir) / runs.MODEL_DIR, env["SM_MODEL_DIR"], dirs_exist_ok=True)
        print(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
