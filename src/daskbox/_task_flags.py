"""Flags that take numbers but are shown and parsed daskbox's way.

Invoke shows ``=INT`` only for a flag of kind ``int``, and then casts the value itself in its
parser, so ``--workers abc`` would end in a ValueError traceback, and a flag with a default
could not tell "not given" from that default. ``NumberFlagsTask`` shows the flags it is
given as ``=INT`` yet hands the task the text typed (``None`` when not given): the settings
convert it and refuse a bad value in one line, and a configured value still applies when the
flag is absent.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from invoke.parser.argument import Argument
from invoke.tasks import Task


class NumberText(Argument):
    """Kind ``int`` for invoke's help (``=INT``); the value stays the text typed."""

    def set_value(self, value: Any, cast: bool = True) -> None:
        super().set_value(value, cast=False)


class NumberFlagsTask(Task[Callable[..., Any]]):
    """A task whose flags named in ``numbers`` (dashed names) are ``NumberText``."""

    def __init__(
        self, body: Callable[..., Any], numbers: Iterable[str] = (), **kwargs: Any
    ) -> None:
        super().__init__(body, **kwargs)
        self.numbers = frozenset(numbers)

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        arguments = super().get_arguments(ignore_unknown_help)
        unknown = self.numbers - {argument.names[0] for argument in arguments}
        if unknown:
            raise ValueError(f"number flags that {self.name} does not take: {sorted(unknown)}")
        return [
            NumberText(
                names=argument.names,
                kind=int,
                default=argument.default,
                help=argument.help,
                positional=argument.positional,
                optional=argument.optional,
                attr_name=argument.attr_name,
            )
            if argument.names[0] in self.numbers
            else argument
            for argument in arguments
        ]


def grouped_doc(summary: str, groups: Mapping[str, str], width: int = 76) -> str:
    """A task docstring: ``summary`` (what ``invoke --list`` shows), then one line per
    group (title -> its flags' names, space-separated), since invoke's help lists the flags
    alphabetically only. Groups with no flags are left out."""
    filled = {title: [f"--{flag}" for flag in flags.split()] for title, flags in groups.items()}
    filled = {title: flags for title, flags in filled.items() if flags}
    indent = max(map(len, filled)) + 4
    lines = [summary, "", "Flags by purpose (each is explained under Options):"]
    for title, flags in filled.items():
        wrapped = textwrap.wrap(
            " ".join(flags), width - indent, break_on_hyphens=False, break_long_words=False
        )
        lines.append(f"  {title + ':':<{indent - 2}}{wrapped[0]}")
        lines.extend(" " * indent + line for line in wrapped[1:])
    return "\n".join(lines)
