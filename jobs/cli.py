"""The ``ser`` command line: each job module defines its click command; this file only assembles them.

It also decides how everything ends: a user's mistake (a path that does not exist, a folder that is not a model
bundle, ...) or any other failure is one ``Error: ...`` line and exit status 1 (2 for bad usage, as click does),
with control characters escaped; the traceback is printed only with ``-v``.
"""

from __future__ import annotations

import sys
import traceback

import click

from jobs import embed, evaluate, extract, make_archive, predict, report, score, submit, train, train_head
from jobs.ray_runtime import configure_output, verbosity
from ser_core.errors import BundleError
from ser_core.text import shown


def user_error_message(err: Exception) -> str | None:
    """The one line that tells the user what went wrong and what to do, for mistakes users make; else ``None``."""
    if isinstance(err, BundleError):
        return f"{err}. Pass --model a bundle folder written by ser train (with bundle.json), or leave --model out for the bundled model."
    if isinstance(err, OSError) and err.filename is not None:  # missing path, a file where a folder belongs, no access
        return f"{err.filename}: {err.strerror}; check the path."
    if isinstance(err, FileNotFoundError):
        return f"{err}; check the path."
    return None


def error_message(err: Exception) -> str:
    """One line for any failure: the user's mistake explained, or the exception with a pointer to ``-v``."""
    detail = " ".join(str(err).split())  # one line, whatever the exception's text
    return user_error_message(err) or f"{type(err).__name__}: {detail} (rerun with ser -v to see the traceback)"


class SerGroup(click.Group):
    """A click group that turns every exception a command raises into one ``Error:`` line (traceback with ``-v``)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.exceptions.ClickException as err:
            err.message = shown(err.message)  # names in it are data: no control character reaches the terminal
            raise
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as err:
            if verbosity() > 0:
                traceback.print_exc()
            raise click.ClickException(shown(error_message(err))) from None


@click.group(cls=SerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True,
              help="-v: also INFO logs and Ray workers' output, and tracebacks on errors; -vv: Ray's and TensorFlow's own logs too.")
def main(verbose: int) -> None:
    """ser: distributed speech emotion recognition on Ray."""
    configure_output(max(verbose, verbosity()))


# One line per job module; each module's ``cli`` is a click command (heavy imports stay inside it).
main.add_command(extract.cli)
main.add_command(submit.cli)
main.add_command(submit.jobs)
main.add_command(train.cli)
main.add_command(embed.cli)
main.add_command(train_head.cli)
main.add_command(evaluate.cli)
main.add_command(predict.cli)
main.add_command(score.cli)
main.add_command(report.cli)
main.add_command(make_archive.cli)

if __name__ == "__main__":
    sys.exit(main())
