"""The short public face: `from blipnb import load_captions, ...` works, and `import blipnb` stays light."""
import inspect
import subprocess
import sys

import pytest

import blipnb


@pytest.mark.parametrize("name", [n for n in blipnb.__all__ if n != "__version__"])
def test_each_public_name_resolves_to_the_function_of_its_module(name):
    import importlib

    value = getattr(blipnb, name)
    assert callable(value) and value.__name__ == name
    assert value is getattr(importlib.import_module(blipnb._PUBLIC[name]), name)
    assert inspect.getdoc(value), f"{name} has no docstring"


def test_from_import_and_dir_list_the_public_names():
    from blipnb import evaluate_run, load_captions, load_preset, score_captions, start_model, train_model  # noqa: F401

    assert set(blipnb.__all__) <= set(dir(blipnb))
    assert blipnb.__version__ == blipnb.version.__version__


def test_an_unknown_name_is_an_attribute_error_and_submodules_still_import():
    with pytest.raises(AttributeError, match="no_such_thing"):
        blipnb.no_such_thing  # noqa: B018
    assert not hasattr(blipnb, "load_caption")  # a typo is not silently resolved
    from blipnb import schema

    assert schema.METRIC_KEYS


def test_importing_blipnb_or_its_scoring_does_not_import_torch():
    code = ("import sys, blipnb, blipnb.scoring, blipnb.presets\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules)\n"
            "print(','.join(heavy) or 'none')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "none"
