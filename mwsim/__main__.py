"""The ``mwsim`` command's entry point: a Ctrl-C while the command's modules are still
importing ends it as one at any later moment does (130, no traceback); a SIGTERM then
ends it by the signal (143 to a shell)."""

from __future__ import annotations

import signal
import sys


def main() -> None:
    try:
        from mwsim.cli import main as command
    except KeyboardInterrupt:
        sys.exit(128 + signal.SIGINT)
    command()


if __name__ == "__main__":
    main()
