"""Placeholder: replaced by the images component."""

from invoke import task


@task
def build(c):  # type: ignore[no-untyped-def]
    raise NotImplementedError


@task
def push(c):  # type: ignore[no-untyped-def]
    raise NotImplementedError


@task
def dockerfile(c):  # type: ignore[no-untyped-def]
    raise NotImplementedError
