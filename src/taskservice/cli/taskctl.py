"""`taskctl`: the command-line client (see the taskctl issue)."""

from __future__ import annotations

import sys


def main() -> None:
    print("taskctl is not built yet", file=sys.stderr)
    sys.exit(2)
