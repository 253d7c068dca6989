"""Shared plumbing of the command-line tools: one-line errors and logging set-up."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from ldct_clip.errors import InputError

EXIT_USER_ERROR = 2


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a CLI entry point; print an :class:`InputError` as one line on stderr and return 2.

    Programming errors still raise with a full traceback: they are bugs to report, not user input.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = main(argv)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
