"""Parameter files (papermill YAML presets such as notebooks/params/sample.yaml) and -p overrides, read and checked."""
from __future__ import annotations

from pathlib import Path

from .config import Config, build_config, check_known
from .errors import ParameterError


def read_params(files: list[str] | tuple = (), overrides: list[tuple[str, str]] | tuple = ()) -> dict:
    """Merge YAML parameter files and -p NAME VALUE overrides (values parsed as YAML); unknown names fail."""
    import yaml

    params: dict = {}
    for f in files:
        try:
            with open(f, encoding="utf-8") as fh:
                loaded = yaml.safe_load(fh) or {}
        except OSError as e:
            raise ParameterError(f"cannot read parameters file {str(f)!r}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise ParameterError(f"{f}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise ParameterError(f"{f}: a parameters file must be a mapping of name: value")
        check_known(loaded, where=str(f))
        params.update(loaded)
    parsed = {name: yaml.safe_load(value) for name, value in overrides}
    check_known(parsed, where="the -p overrides")
    return params | parsed


def load_preset(path: str | Path, **overrides) -> Config:
    """Build a Config from a papermill parameters file (e.g. notebooks/params/sample.yaml) plus overrides."""
    return build_config({**read_params([str(path)]), **overrides})


def add_parameter_arguments(parser) -> None:
    """The -f FILE and -p NAME VALUE options shared by `blipnb run-all` and `blipnb train` (see read_params)."""
    parser.add_argument("-f", "--parameters-file", action="append", default=[], help="papermill YAML parameters")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
