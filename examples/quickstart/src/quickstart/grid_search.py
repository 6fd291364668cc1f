"""A numpy-only ridge-regression grid search, fanned out over a ``distributed.Client``.

Run it on the daskbox cluster::

    from daskbox import connect
    from quickstart import grid_search
    print(grid_search(connect()))

or locally with ``python -m quickstart`` (starts a LocalCluster).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from distributed import Client


@dataclass(frozen=True)
class GridResult:
    """Cross-validated mean squared error for every penalty, and the best one."""

    errors: dict[float, float]
    best_alpha: float


def make_data(
    samples: int = 4_000, features: int = 40, noise: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Return a synthetic regression problem ``(X, y)`` with a known sparse signal."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, features))
    coefficients = np.where(rng.random(features) < 0.2, rng.standard_normal(features), 0.0)
    y = x @ coefficients + noise * rng.standard_normal(samples)
    return x, y


def _ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    gram = x.T @ x + alpha * np.eye(x.shape[1])
    return np.linalg.solve(gram, x.T @ y)


def cross_validated_error(x: np.ndarray, y: np.ndarray, alpha: float, folds: int = 20) -> float:
    """Mean squared validation error of ridge regression with penalty ``alpha`` over k folds."""
    indices = np.arange(len(y))
    errors = []
    for validation in np.array_split(indices, folds):
        train = np.setdiff1d(indices, validation)
        weights = _ridge_fit(x[train], y[train], alpha)
        residual = x[validation] @ weights - y[validation]
        errors.append(float(np.mean(residual**2)))
    return float(np.mean(errors))


def grid_search(
    client: Client, alphas: tuple[float, ...] | None = None, folds: int = 20
) -> GridResult:
    """Score every penalty on the cluster (one task each) and return the best."""
    alphas = alphas or tuple(float(a) for a in np.logspace(-3, 3, 100))
    x, y = make_data()
    # Scatter once so every task reuses the same data instead of shipping it per task.
    x_future, y_future = client.scatter([x, y], broadcast=True)
    futures = client.map(
        cross_validated_error,
        [x_future] * len(alphas),
        [y_future] * len(alphas),
        alphas,
        folds=folds,
        pure=False,
    )
    errors = dict(zip(alphas, client.gather(futures), strict=True))
    return GridResult(errors=errors, best_alpha=min(errors, key=errors.__getitem__))
