"""How every `python -m training.<command>` ends.

A user's mistake or a machine that lacks something (a missing or unreadable file, a bad manifest,
model or option value, a teacher that does not load, a program such as espeak-ng or sox that is
not installed) ends the command with one line on stderr, `<prog>: error: <what was wrong>`, and
exit status 1 (so do the checks that raise SystemExit("what was wrong"); argparse's own option
errors keep its status 2); Ctrl-C ends it with status 130. A traceback would bury the message, so it is shown
only with WAV2SMALL_TRACEBACK=1 (for a developer chasing a bug). Anything else (a bug) keeps its
traceback. What a command wrote before the error stays: every file goes through training/files.py.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable
from typing import NoReturn

from wav2small.errors import Wav2SmallError

TRACEBACK_ENV = "WAV2SMALL_TRACEBACK"


class ToolError(RuntimeError):
    """A program or Debian package the command needs (espeak-ng, flite, sox, timidity, the audio
    packages) is missing, or the program failed."""


# ValueError covers the training package's own errors (UnreadableAudio, TeacherError,
# QuantizationError, PublishedWeightsError) and the checks of options and files;
# FloatingPointError is distill's stop on a non-finite loss
USER_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, Wav2SmallError, ToolError, FloatingPointError)


def describe(e: BaseException) -> str:
    """The one line shown for `e`: an OSError names its file, anything else is its message."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.strerror}: {os.fsdecode(e.filename)}"
    return str(e) or type(e).__name__


def run(main: Callable[[], int | None], prog: str) -> NoReturn:
    """Call `main` and exit with its status, turning USER_ERRORS and Ctrl-C into one line; warnings
    print as `<prog>: warning: <message>` (their source line is for developers: WAV2SMALL_TRACEBACK=1)."""
    if not os.environ.get(TRACEBACK_ENV):
        warnings.showwarning = lambda message, *rest, **kw: print(f"{prog}: warning: {message}", file=sys.stderr)
    try:
        code = main()
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit as e:
        if not isinstance(e.code, str):   # argparse's own (already prefixed, status 2) and sys.exit(n)
            raise
        # the checks that end a run with SystemExit("message"): the same line as every other error
        print(f"{prog}: error: {e.code}", file=sys.stderr)
        sys.exit(1)
    except USER_ERRORS as e:
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"{prog}: error: {describe(e)}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code or 0)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help keeps the module docstring's layout and names each option's default (where it has one
    worth naming: not None, False or an empty string)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if ("%(default)" in text or not action.option_strings or d is None or d is False or d in ("", argparse.SUPPRESS)
                or (isinstance(d, (list, tuple)) and not d)):
            return text
        return f"{text} (default: %(default)s)".strip()
