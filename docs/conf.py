"""Sphinx configuration: daskbox's documentation, in Markdown (MyST), with Dask's theme.

Built with warnings as errors by scripts/test.sh:
``sphinx-build -W --keep-going -b html docs <out>``. Everything renders offline: the
pipeline diagram is drawn by Graphviz's ``dot`` (Debian's ``graphviz``, in setup.sh).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import daskbox  # noqa: E402

project = "daskbox"
author = "daskbox's authors"
copyright = "daskbox's authors"
release = daskbox.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.graphviz",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"

# `page.md#a-heading` links, as GitHub renders them.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]
# Indented blocks and bare fences are log lines and terminal output, not Python.
highlight_language = "none"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

graphviz_output_format = "svg"

html_theme = "dask_sphinx_theme"
html_title = "daskbox"
