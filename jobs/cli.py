"""The ``ser`` command line: each job module defines its click command; this file only assembles them."""

from __future__ import annotations

import logging
import sys

import click

from jobs import extract, submit, train
from jobs import make_archive, report, score
from jobs import evaluate, predict


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
def main(verbose: bool) -> None:
    """ser: distributed speech emotion recognition on Ray."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


# One line per job module; each module's ``cli`` is a click command (heavy imports stay inside it).
main.add_command(extract.cli)
main.add_command(submit.cli)
main.add_command(submit.jobs)
main.add_command(train.cli)
main.add_command(evaluate.cli)
main.add_command(predict.cli)
main.add_command(score.cli)
main.add_command(report.cli)
main.add_command(make_archive.cli)

if __name__ == "__main__":
    sys.exit(main())
