"""What every asrc command shares: bad input ends in one line, ``PROG: error: ...``.

Wrap a command's ``main(argv=None)`` with :func:`command`. Errors a user can fix (see
:func:`user_message`) print one line naming the culprit and exit non-zero; the traceback is
printed too with ``--verbose`` (which :class:`ArgumentParser` adds). Anything else is a bug
and keeps its traceback.
"""

import argparse
import functools
import sys
import traceback
from pathlib import Path
from typing import Optional

from asrc.errors import AsrcError

__all__ = ["ArgumentParser", "command", "user_message"]

VERBOSE = "--verbose"
_ASRC_DIR = Path(__file__).resolve().parents[1]


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with ``--verbose`` (subcommand parsers get it too)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument(VERBOSE, action="store_true", help="on an error, also print the Python traceback")


def _raised_by_asrc(e: BaseException) -> bool:
    """Whether the innermost frame of ``e``'s traceback is asrc's own code."""
    tb = e.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(_ASRC_DIR)


def _worker_message(e: BaseException, message: str) -> str:
    """The original message of an error that torch's DataLoader re-raised from a worker process
    (its message is then the worker's whole traceback)."""
    if "\nOriginal Traceback (most recent call last):" not in message:
        return message
    cls = type(e)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    _, found, original = message.rpartition(f"\n{name}: ")
    return original if found else message


def user_message(e: BaseException) -> Optional[str]:
    """The one-line message of an error a user can fix, or None for a bug.

    User errors: :class:`AsrcError`; an ``OSError`` about a named file (missing, a directory,
    no permission); an ``OSError`` or ``ValueError`` that asrc's own code raised about its
    input. A ``ValueError`` from deeper down (torch, numpy) is a bug and keeps its traceback.
    """
    if isinstance(e, AsrcError):
        message = str(e)
    elif isinstance(e, OSError) and e.filename is not None:
        message = f"{e.filename}: {e.strerror or e}"
    elif isinstance(e, (OSError, ValueError)) and _raised_by_asrc(e):
        message = str(e)
    else:
        return None
    message = _worker_message(e, message)
    # A message may quote a command's stderr over several lines: keep it to one.
    return "; ".join(line.strip() for line in message.splitlines() if line.strip()) or type(e).__name__


def command(prog: str, status: int = 1):
    """Decorator for ``main(argv=None)``: user errors become ``PROG: error: ...`` and ``status``."""

    def wrap(main):
        @functools.wraps(main)
        def run(argv=None):
            args = sys.argv[1:] if argv is None else list(argv)
            try:
                return main(argv)
            except Exception as e:
                message = user_message(e)
                if message is None:
                    raise
                if VERBOSE in args:
                    traceback.print_exc(file=sys.stderr)
                print(f"{prog}: error: {message}", file=sys.stderr)
                return status

        return run

    return wrap
