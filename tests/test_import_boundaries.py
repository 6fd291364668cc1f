"""Which component may import which: data flows one way, and each later stage reads the record
an earlier one handed over instead of reaching into that stage.

- client/ imports neither images/ nor gcloud/ (connect reads the connection file + record);
- gcloud/ imports no images/ module (launch reads the image record);
- a pure module (one that only computes) imports neither the Docker SDK nor Poetry.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "daskbox"


def daskbox_imports(path: Path) -> set[str]:
    """Every ``daskbox...`` module ``path`` imports, at any depth (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return {module for module in found if module.split(".")[0] == "daskbox"}


@pytest.mark.parametrize(
    ("component", "forbidden"),
    [("client", ("daskbox.images", "daskbox.gcloud")), ("gcloud", ("daskbox.images",))],
)
def test_a_component_reads_records_not_other_components(component, forbidden):
    for path in sorted((SOURCE / component).glob("*.py")):
        for module in daskbox_imports(path):
            assert not module.startswith(forbidden), f"{component}/{path.name} imports {module}"


PURE_MODULES = (
    "daskbox",
    "daskbox.contract",
    "daskbox.record",
    "daskbox.image_ref",
    "daskbox._pyproject",
    "daskbox.client.check",
    "daskbox.client.connection",
    "daskbox.client.local",
    "daskbox.gcloud.cloud_init",
    "daskbox.gcloud.commands",
    "daskbox.gcloud.settings",
    "daskbox.gcloud.spec",
    "daskbox.images.dockerfile",
    "daskbox.images.environment",
    "daskbox.entrypoint.sizing",
)


@pytest.mark.parametrize("module", PURE_MODULES)
def test_a_pure_module_imports_no_docker_and_no_poetry(module):
    probe = (
        f"import {module}, sys\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'docker', 'poetry', 'cleo', 'poetry_plugin_export'})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == [], f"importing {module} loads {loaded}"
