"""Parameter files (papermill YAML presets such as notebooks/params/sample.yaml) and -p overrides, read and checked.

Values are read as YAML, then matched to the type of the parameter's dataclass field, because YAML 1.1 (PyYAML)
guesses wrong both ways: `1e-4` is a string to it (learning_rate needs a float) and `no` is False (eval_strategy
needs the string "no"). Any error is one line naming the file (and line) or the -p option.
"""
from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

from .config import RUN_FIELDS, STAGES, Config, build_config, check_known
from .errors import ParameterError

_TYPES = {name: hint for cls in (Config, *STAGES.values()) for name, hint in typing.get_type_hints(cls).items()
          if name not in STAGES}  # parameter name -> its field's type (Optional[int], Union[bool, str], ...)
assert set(_TYPES) >= {f.name for f in RUN_FIELDS}


def read_params(files: list[str] | tuple = (), overrides: list[tuple[str, str]] | tuple = ()) -> dict:
    """Merge YAML parameter files and -p NAME VALUE overrides (later wins); unknown names fail, and each value is
    matched to its parameter's type (see coerce)."""
    params: dict = {}
    for f in files:
        loaded, texts = _read_file(f)
        check_known(loaded, where=str(f))
        params.update({name: coerce(name, value, texts.get(name), where=str(f)) for name, value in loaded.items()})
    check_known(dict(overrides), where="the -p overrides")
    for name, text in overrides:
        params[name] = coerce(name, _yaml_value(text, f"-p {name}"), text, where=f"-p {name}")
    return params


def coerce(name: str, value: Any, text: str | None = None, where: str = "") -> Any:
    """`value` (as YAML read it, from the plain scalar `text`) as the type of parameter `name` wants, where YAML's
    guess differs: a number written as a string (`1e-4`) becomes a float or int, and a word YAML 1.1 reads as a
    bool or null (`no`, `off`, `null`) stays that word where the parameter is a string. A value that fits no type
    is left for build_config to refuse, naming the parameter."""
    allowed = _allowed(_TYPES[name])
    if isinstance(value, bool) or value is None:
        if type(value) in allowed or text is None or str not in allowed:
            return value
        return text  # `-p eval_strategy no`, `prompt: null`: the word itself
    if isinstance(value, str) and str not in allowed and (int in allowed or float in allowed):
        try:
            number = float(value.replace("_", ""))
        except ValueError:
            raise ParameterError(f"parameter {name!r} ({where}) must be a number, got {value!r}") from None
        if float in allowed:
            return number
        if number.is_integer():
            return int(number)
        raise ParameterError(f"parameter {name!r} ({where}) must be a whole number, got {value!r}")
    if isinstance(value, (int, float)) and str in allowed and not ({int, float} & set(allowed)):
        return text if text is not None else str(value)  # `-p prompt 1`: the text as written
    return value


PRESET_DIRS = ("params", "notebooks/params")  # where a preset's name is looked up, from the current directory
REPO_PRESETS = Path(__file__).resolve().parents[1] / "notebooks" / "params"  # a checkout's (editable install)


def preset_path(preset: str, cwd: str | Path | None = None) -> Path:
    """The YAML file a `preset` names: a path as given (absolute, or from `cwd`), or a name such as "sample" looked
    up as params/NAME.yaml and notebooks/params/NAME.yaml from `cwd`, then in this checkout's notebooks/params. A
    ParameterError lists the presets there are when none is found."""
    cwd = Path(cwd or Path.cwd())
    given = Path(preset).expanduser()
    if given.suffix in (".yaml", ".yml") or len(given.parts) > 1:
        path = given if given.is_absolute() else cwd / given
        if not path.is_file():
            raise ParameterError(f"parameter 'preset': no file {str(path)!r}")
        return path
    folders = [cwd / d for d in PRESET_DIRS] + [REPO_PRESETS]
    for folder in folders:
        if (folder / f"{preset}.yaml").is_file():
            return folder / f"{preset}.yaml"
    known = sorted({f.stem for folder in folders if folder.is_dir() for f in folder.glob("*.yaml")})
    raise ParameterError(f"parameter 'preset': no preset named {preset!r}; there are: {', '.join(known) or 'none'} "
                         "(or give a YAML file's path)")


def with_preset(values: dict, defaults: dict, cwd: str | Path | None = None) -> dict:
    """`values` (a notebook's parameters) with their `preset` applied: each of the preset's parameters replaces a
    value still at its default (`defaults[name]`, what the parameters cell shows), while a value that differs from
    it was set in the cell or by -p, and wins. Without a preset, `values` as they are."""
    if not values.get("preset"):
        return values
    preset = read_params([str(preset_path(values["preset"], cwd))])
    chosen = {k: v for k, v in preset.items() if k not in values or values[k] == defaults.get(k)}
    return {**values, **chosen}


def load_preset(path: str | Path, **overrides) -> Config:
    """Build a Config from a papermill parameters file (e.g. notebooks/params/sample.yaml) plus overrides."""
    return build_config({**read_params([str(path)]), **overrides})


def add_parameter_arguments(parser) -> None:
    """The -f FILE and -p NAME VALUE options shared by `blipnb run-all` and `blipnb train` (see read_params)."""
    parser.add_argument("-f", "--parameters-file", action="append", default=[], help="papermill YAML parameters")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))


def _read_file(f) -> tuple[dict, dict]:
    """(name -> value, name -> the plain scalar's text) of a YAML parameters file; errors name the file and line."""
    import yaml

    try:
        text = Path(f).read_text(encoding="utf-8")
    except OSError as e:
        raise ParameterError(f"cannot read parameters file {str(f)!r}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        line = e.object[:e.start].count(b"\n") + 1
        raise ParameterError(f"{f}, line {line}: not UTF-8 text (byte 0x{e.object[e.start]:02x})") from None
    try:
        loaded = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as e:
        raise ParameterError(f"{f}: {_yaml_problem(e)}") from None
    if loaded is None:
        return {}, {}
    if not isinstance(loaded, dict):
        raise ParameterError(f"{f}: a parameters file must be a mapping of name: value, got {type(loaded).__name__}")
    texts = {k.value: v.value for k, v in node.value
             if isinstance(v, yaml.ScalarNode) and v.style is None}  # plain (unquoted) scalars only
    return loaded, texts


def _yaml_value(text: str, where: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ParameterError(f"{where}: {_yaml_problem(e)}") from None


def _yaml_problem(e) -> str:
    """'line 3, column 7: not valid YAML (mapping values are not allowed here)' from a PyYAML error."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"{where}not valid YAML ({problem})"


def _allowed(hint: Any) -> tuple:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)
