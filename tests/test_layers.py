"""The layering rules of DESIGN.md, checked on the real import graph.

The box may have no torch: importing the runtime, calibration, firmware bridge or scenarios
must not load it, and the package ``__init__``s must not load the optional radio and serial
libraries either. Imports are checked in a fresh interpreter (this test process has torch loaded
by other tests) and statically, so a module-level ``import torch`` is caught even where it
would be skipped at run time.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import fusion_edge

ROOT = Path(fusion_edge.__file__).parent
LIGHT_PACKAGES = ("runtime", "calibration", "firmware_bridge", "scenarios")
OPTIONAL_HEAVY = ("bleak", "bumble", "serial")

# Which fusion_edge parts each light part may import (DESIGN.md: an arrow is "may import").
# errors, file_access, csv_text and toml_lines are the floor: standard library only, usable by every layer.
FLOOR = {"errors", "file_access", "csv_text", "toml_lines"}
ALLOWED_PARTS = {
    "scenarios": FLOOR | {"scenarios"},
    "firmware_bridge": FLOOR | {"firmware_bridge", "scenarios"},
    "calibration": FLOOR | {"calibration", "firmware_bridge", "scenarios"},
    "runtime": FLOOR | {"runtime", "calibration", "firmware_bridge", "scenarios"},
}


def run_python(code: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT.parent
    )
    assert proc.returncode == 0, f"the import check crashed:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_package_inits_stay_lean() -> None:
    code = f"""
import json, sys
import fusion_edge, fusion_edge.runtime, fusion_edge.calibration, fusion_edge.firmware_bridge
import fusion_edge.scenarios
heavy = {("torch",) + OPTIONAL_HEAVY!r}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""
    loaded = run_python(code)
    assert loaded == [], f"importing the light packages loaded {loaded}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_of_the_light_packages_loads_torch() -> None:
    code = f"""
import importlib, json, pkgutil, sys
import fusion_edge
first = {{}}
imported = []
for part in {LIGHT_PACKAGES!r}:
    pkg = importlib.import_module("fusion_edge." + part)
    walked = pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")
    names = [pkg.__name__] + [m.name for m in walked]
    for name in names:
        importlib.import_module(name)
        imported.append(name)
        if "torch" in sys.modules and "torch" not in first:
            first["torch"] = name
print(json.dumps({{"imported": imported, "first": first}}))
"""
    expected = {_module_name(p) for part in LIGHT_PACKAGES for p in (ROOT / part).rglob("*.py")}
    res = run_python(code)
    assert "torch" not in res["first"], f"importing {res['first'].get('torch')} loaded torch"
    # The walk really covered every module file (a broken walk would pass vacuously).
    assert expected <= set(res["imported"]), sorted(expected - set(res["imported"]))
    assert "fusion_edge.scenarios.simulator" in res["imported"]
    assert "fusion_edge.runtime.dsp" in res["imported"]


def _module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: not inside functions or
    ``if TYPE_CHECKING:`` blocks (class bodies and try/if blocks do run)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    children = getattr(node, field, None)
                    if isinstance(children, list):
                        visit(
                            [c for c in children if isinstance(c, ast.stmt)]
                            + [
                                s
                                for h in children
                                if isinstance(h, ast.ExceptHandler)
                                for s in h.body
                            ]
                        )
                if isinstance(node, ast.Match):
                    for case in node.cases:
                        visit(case.body)

    visit(tree.body)
    return found


def _imported_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:  # relative import: resolved by the caller
        return []
    return [node.module or ""]


def _light_files() -> list[Path]:
    files = [p for part in LIGHT_PACKAGES for p in sorted((ROOT / part).rglob("*.py"))]
    return files + [p for p in sorted(ROOT.glob("*.py"))]


def test_static_no_module_level_torch_import() -> None:
    offenders = []
    for path in _light_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in _module_level_imports(tree):
            for name in _imported_names(node):
                if name == "torch" or name.startswith("torch."):
                    offenders.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}: {name}")
    assert not offenders, "module-level torch imports:\n" + "\n".join(offenders)


def test_static_check_catches_what_it_should() -> None:
    """The AST walk itself: a torch import inside a try/class body is found, one inside a
    function or a TYPE_CHECKING block is not."""
    src = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import torch\n"
        "def f():\n    import torch\n"
        "try:\n    import torch.nn\nexcept ImportError:\n    from torch import Tensor\n"
        "class A:\n    import torch as t\n"
    )
    names = [n for node in _module_level_imports(ast.parse(src)) for n in _imported_names(node)]
    assert names == ["typing", "torch.nn", "torch", "torch"]


# Lazy imports of a higher layer that DESIGN.md declares: the runtime's full-precision torch
# fallback rebuilds the training model inside the backend that needs it.
DECLARED_LAZY = {("runtime", "fusion_edge.toolkit.model")}


@pytest.mark.parametrize("part", LIGHT_PACKAGES)
def test_static_layering(part: str) -> None:
    """Lower layers never import higher ones: never at module level, and inside a function
    only where DESIGN.md declares it."""
    offenders = []
    for path in sorted((ROOT / part).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        top = {id(node) for node in _module_level_imports(tree)}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for name in _imported_names(node):
                if not name.startswith("fusion_edge."):
                    continue
                if name.split(".")[1] in ALLOWED_PARTS[part]:
                    continue
                if id(node) not in top and (part, name) in DECLARED_LAZY:
                    continue
                offenders.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}: {name}")
    assert not offenders, f"fusion_edge.{part} imports a higher layer:\n" + "\n".join(offenders)
