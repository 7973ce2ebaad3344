"""The import contract: blipnb is layers with imports only downward, no cycles, no torch below the model layer.

The contracts live in pyproject.toml ([tool.importlinter]); import-linter checks them on the real import graph,
including imports inside functions. ARCHITECTURE.md draws the same picture.
"""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "blipnb"
LINT = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")


def _lint(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([LINT, "--no-cache", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_layer_contracts_are_kept():
    out = _lint()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 kept, 0 broken" in out.stdout


def test_the_layer_check_catches_an_upward_import(tmp_path):
    """The same graph against the layers turned upside down must break: the checker really sees the imports."""
    config = tmp_path / "upside_down.ini"
    config.write_text("[importlinter]\nroot_package = blipnb\n\n[importlinter:contract:upside-down]\n"
                      "name = upside down\ntype = layers\nlayers =\n    blipnb.config\n    blipnb.data\n"
                      "    blipnb.model\n    blipnb.training\n    blipnb.evaluation\n")
    out = _lint(str(config))
    assert out.returncode != 0
    assert "BROKEN" in out.stdout and "blipnb.training" in out.stdout


def test_config_imports_only_the_leaves():
    source = (PACKAGE / "config.py").read_text()
    imported = set(re.findall(r"^\s*from \.+(\w+)", source, flags=re.M))
    assert imported <= {"errors", "runs", "schema"}, imported


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_long_modules_say_why(path):
    """No module grows past ~300 lines without a one-line reason in its docstring ('... on purpose: ...')."""
    text = path.read_text()
    if text.count("\n") > 300:
        docstring = re.match(r'\s*"""(.*?)"""', text, flags=re.S)
        assert docstring and "on purpose" in docstring.group(1), f"{path.name}: {text.count(chr(10))} lines"


def test_importing_blipnb_changes_no_ipython_state():
    """Importing any module leaves IPython untouched; notebooks call blipnb.notebook.setup() explicitly."""
    code = ("import IPython, pkgutil, importlib, blipnb\n"
            "from IPython.testing.globalipapp import start_ipython\n"
            "shell = start_ipython()\n"
            "before = dict(shell.display_formatter.formatters['image/png'].type_printers)\n"
            "for m in pkgutil.walk_packages(blipnb.__path__, 'blipnb.'):\n"
            "    importlib.import_module(m.name)\n"
            "after = shell.display_formatter.formatters['image/png'].type_printers\n"
            "assert before == after, set(after) - set(before)\n"
            "assert shell.custom_exceptions == (), shell.custom_exceptions\n"
            "import blipnb.notebook as nb\n"
            "nb.setup()\n"
            "assert shell.custom_exceptions, 'setup() installs the one-line errors'\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout + out.stderr
