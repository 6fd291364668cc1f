"""Placeholder: replaced by the gcloud component."""

from invoke import task


@task
def launch(c):  # type: ignore[no-untyped-def]
    raise NotImplementedError


@task
def teardown(c):  # type: ignore[no-untyped-def]
    raise NotImplementedError


@task
def status(c):  # type: ignore[no-untyped-def]
    raise NotImplementedError
