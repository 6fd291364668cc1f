"""Quickstart: choose a ridge penalty by k-fold cross-validation, one Dask task each."""

from quickstart.grid_search import GridResult, cross_validated_error, grid_search, make_data

__all__ = ["GridResult", "cross_validated_error", "grid_search", "make_data"]
