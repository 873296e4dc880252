r"""Names from the data (file names, queue folders, labels) shown as data, never as instructions to a terminal."""

from __future__ import annotations


def shown(text: object) -> str:
    r"""``text`` with every non-printable character escaped as ``repr`` escapes it (``\x1b``, ``\n``, ``\u202e``, a
    file name's undecodable byte ``\udcff``); everything else, backslashes included, is left as it is.

    >>> print(shown("e\x1b]0;PWNED\x07\x1b[2Jx.wav"))
    e\x1b]0;PWNED\x07\x1b[2Jx.wav
    >>> print(shown("queue 1/café\tbis"))
    queue 1/café\tbis
    """
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))
