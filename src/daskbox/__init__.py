"""daskbox: your exact Poetry environment, as a Dask cluster on one big VM.

The public names are loaded lazily (PEP 562) so that ``python -m daskbox.entrypoint``
inside the image imports nothing but the entrypoint: the image carries only the
user's locked environment, not daskbox's own dependencies (docker, poetry, ...).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "connect": "daskbox.client.connect",
    "EnvironmentMismatch": "daskbox.errors",
    "DaskboxError": "daskbox.errors",
    "EnvironmentMismatchWarning": "daskbox.errors",
}

__all__ = [
    "DaskboxError",
    "EnvironmentMismatch",
    "EnvironmentMismatchWarning",
    "__version__",
    "connect",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'daskbox' has no attribute {name!r}")
