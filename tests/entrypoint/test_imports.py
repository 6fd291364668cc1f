"""The entrypoint package is copied into the image with daskbox's contract module only: it
may import only the stdlib, psutil, dask, distributed, the contract and itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "daskbox" / "entrypoint"
ALLOWED = set(sys.stdlib_module_names) | {"psutil", "dask", "distributed"}


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            modules.add(node.module or "")
    return modules


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda path: path.name)
def test_imports_only_what_the_image_has(path):
    for module in imported_modules(path):
        top = module.split(".")[0]
        if top == "daskbox":
            allowed = module.startswith("daskbox.entrypoint") or module == "daskbox.contract"
            assert allowed, f"{path.name} imports {module}"
        else:
            assert top in ALLOWED, f"{path.name} imports {module}"
