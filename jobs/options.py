"""Click options that mean the same in every ``ser`` command, declared once.

Use them as decorators (``@options.ray_address``); options whose help depends on the command take it::

    @options.date("Output partition [default: today, UTC].")

:func:`refusals`, beneath a command's options, shows what its ``run_*`` function refuses as click does.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable

import click

from ser_core.corpora import parse_corpus_option
from ser_core.errors import Refused

Decorator = Callable[[Callable], Callable]


def parse_date(_ctx: click.Context | None, _param: click.Parameter | None, value: str | None) -> str | None:
    """Click callback: a ``YYYY-MM-DD`` date, normalised, or ``None``."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise click.BadParameter(f"expected YYYY-MM-DD, got {value!r}") from None


def date(help_text: str) -> Decorator:
    """``--date YYYY-MM-DD``, validated and normalised; ``help_text`` says what the date selects."""
    return click.option("--date", callback=parse_date, default=None, metavar="YYYY-MM-DD", help=help_text)


def corpus(help_text: str = "Labelled corpus NAME=PATH (ravdess, tess, emovo, ased, turev, nemo, cremad or manifest=CSV); repeatable.",
           required: bool = True) -> Decorator:
    """Repeatable ``--corpus NAME=PATH`` into the parameter ``corpora`` (parse it with :func:`corpus_options`)."""
    return click.option("--corpus", "corpora", multiple=True, required=required, metavar="NAME=PATH", help=help_text)


def corpus_options(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Parse repeated ``--corpus NAME=PATH`` options (shared by every command that reads corpora)."""
    try:
        return tuple(parse_corpus_option(v) for v in values)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--corpus") from None


ray_address: Decorator = click.option(
    "--ray-address", envvar="RAY_ADDRESS", default=None, metavar="ADDR",
    help="Join this Ray cluster (default: RAY_ADDRESS) instead of starting a private local Ray.",
)

no_progress: Decorator = click.option("--no-progress", is_flag=True, help="No progress bar.")


def refusals(command: Callable) -> Callable:
    """Decorate a command's function, beneath its options: a :class:`~ser_core.errors.Refused` it raises is click's
    ``Error: <message>`` line and exit status 1."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except Refused as err:
            raise click.ClickException(str(err)) from None

    return run
