"""`python -m bulwark` and the `bulwark` console script.

Ctrl-C while the CLI's modules are still loading is answered like Ctrl-C later: one line and
exit 130, never a traceback (this module imports nothing heavy itself)."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from bulwark.cli import run  # noqa: PLC0415 - inside the guard on purpose

        code = run()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
