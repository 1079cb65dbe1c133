"""What every asrc command shares: bad input ends in one line, ``PROG: error: ...``.

Wrap a command's ``main(argv=None)`` with :func:`command`. Errors a user can fix (see
:func:`user_message`) print one line naming the culprit and exit non-zero; the traceback is
printed too with ``--verbose`` (which :class:`ArgumentParser` adds). Anything else is a bug
and keeps its traceback. A reader of the output that goes away (``asrc-info ... | head -1``)
ends the command quietly, as it ends a Unix tool.
"""

import argparse
import functools
import os
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


def _stdout_reader_gone() -> bool:
    """Whether standard output is a pipe (or socket) whose reader has gone, so that a
    ``BrokenPipeError`` came from writing the output (not from a pipe to a subprocess)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object without a file (a test's capture)
        return False
    try:
        import select

        poller = select.poll()
    except (ImportError, AttributeError):  # no poll(): trust that it was the output
        return True
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _discard_stdout():
    """Point standard output at /dev/null, so that flushing it at exit raises nothing more
    (the recipe of Python's documentation, "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def command(prog: str, status: int = 1):
    """Decorator for ``main(argv=None)``: user errors become ``PROG: error: ...`` and ``status``;
    a closed output pipe is ``status`` without a message."""

    def wrap(main):
        @functools.wraps(main)
        def run(argv=None):
            args = sys.argv[1:] if argv is None else list(argv)
            try:
                result = main(argv)
                if sys.stdout is not None:
                    sys.stdout.flush()  # a reader that went away shows here, not at exit
                return result
            except Exception as e:
                if isinstance(e, BrokenPipeError) and _stdout_reader_gone():
                    _discard_stdout()
                    return status
                message = user_message(e)
                if message is None:
                    raise
                if VERBOSE in args:
                    traceback.print_exc(file=sys.stderr)
                print(f"{prog}: error: {message}", file=sys.stderr)
                return status

        return run

    return wrap
