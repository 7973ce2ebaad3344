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
    assert "4 kept, 0 broken" in out.stdout


def test_the_layer_check_catches_an_upward_import(tmp_path):
    """The same graph against the layers turned upside down must break: the checker really sees the imports."""
    config = tmp_path / "upside_down.ini"
    config.write_text("[importlinter]\nroot_package = blipnb\n\n[importlinter:contract:upside-down]\n"
                      "name = upside down\ntype = layers\nlayers =\n    blipnb.config\n    blipnb.data\n"
                      "    blipnb.model\n    blipnb.training\n    blipnb.evaluation\n")
    out = _lint(str(config))
    assert out.returncode != 0
    assert "BROKEN" in out.stdout and "blipnb.training" in out.stdout


def test_the_runtime_contract_catches_an_import_of_blipnb(tmp_path):
    """A copy of the package whose runtime imports blipnb.config breaks the runtime's contract."""
    import tomllib

    shutil.copytree(PACKAGE, tmp_path / "blipnb", ignore=shutil.ignore_patterns("__pycache__"))
    hosts = tmp_path / "blipnb" / "runtime" / "hosts.py"
    hosts.write_text(hosts.read_text() + "\nfrom .. import config  # noqa: E402,F401\n")
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    lines = ["[importlinter]", "root_package = blipnb", "include_external_packages = True"]
    for contract in settings["contracts"]:
        lines.append(f"[importlinter:contract:{contract['id']}]")
        lines += [f"{k} =\n    " + "\n    ".join(v) if isinstance(v, list) else f"{k} = {v}"
                  for k, v in contract.items() if k != "id"]
    (tmp_path / "contracts.ini").write_text("\n".join(lines) + "\n")
    out = subprocess.run([LINT, "--no-cache", "contracts.ini"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)})
    assert out.returncode != 0, out.stdout + out.stderr
    assert re.search(r"the runtime stands alone[^\n]*\n?[^\n]*BROKEN", out.stdout), out.stdout
    assert "blipnb.runtime.hosts -> blipnb.config" in out.stdout


def test_the_runtime_imports_only_what_an_export_installs():
    """stdlib, torch, transformers, Pillow and numpy (an export's requirements.txt), and its own modules."""
    import ast

    allowed = {"torch", "transformers", "PIL", "numpy", "__future__"} | set(sys.stdlib_module_names)
    for path in sorted((PACKAGE / "runtime").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level >= 1 or node.module.split(".")[0] in allowed, (path.name, node.module)
            elif isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] in allowed for a in node.names), (path.name, ast.dump(node))


def test_config_imports_only_the_leaves():
    for path in (PACKAGE / "config").glob("*.py"):
        imported = set(re.findall(r"^\s*from \.\.(\w+)", path.read_text(), flags=re.M))
        assert imported <= {"errors", "runs", "schema", "runtime"}, (path.name, imported)


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


def test_the_version_is_written_in_one_place():
    """pyproject.toml reads blipnb/version.py, so the installed package's metadata says the same."""
    import tomllib
    from importlib import metadata

    from blipnb.version import __version__

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert metadata.version("blipnb") == __version__
