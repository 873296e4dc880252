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


def brief(err: BaseException, limit: int = 400) -> str:
    """``Type: first line [... last line]`` of an error, at most ``limit`` characters.

    Ray's errors carry the remote traceback in their message; its last line is the root cause.

    >>> brief(ValueError("bad input\\n  at line 2\\nroot cause"))
    'ValueError: bad input ... root cause'
    """
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    text = f"{type(err).__name__}: " + (lines[0] if len(lines) < 2 else f"{lines[0]} ... {lines[-1]}")
    return text if len(text) <= limit else text[: limit - 3] + "..."
