"""``python -m ldct_clip.evaluate``: not yet available in this version of ldct_clip."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    print("ldct-clip-evaluate is not yet available in this version of ldct_clip; "
          "run 'python -m ldct_clip.selfcheck' to check the installation", file=sys.stderr)
    return 2


def cli() -> int:
    """Console-script entry point."""
    return main()


if __name__ == "__main__":
    raise SystemExit(cli())
