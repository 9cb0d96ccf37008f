"""The `bulwark` command: thin; library errors become exit codes here and only here.

Every command imports what it uses when it runs (the noqa PLC0415 lines): `bulwark --help`
loads no SSH, pyinfra, Pulumi, pydantic or rich console code, and the host commands no Pulumi.
"""

from __future__ import annotations

import os
import sys

import typer

from bulwark.cli import cloud, hosts, lab  # noqa: F401 - the commands register themselves
from bulwark.cli.app import app
from bulwark.cli.output import _said, error_line, interrupted_line
from bulwark.errors import ExitCode

__all__ = ["app", "main", "run"]


def run(args: list[str] | None = None) -> int:
    """Run the CLI and return its exit code. Whatever a user can get wrong ends in one `error:`
    line: usage errors (an unknown option, a value of the wrong type) included; Ctrl-C at any
    point is `interrupted` and 130; never a traceback."""
    try:
        code = app(args=args, prog_name="bulwark", standalone_mode=False)
    except (KeyboardInterrupt, typer.Abort):
        interrupted_line()
        return int(ExitCode.INTERRUPTED)
    except typer.TyperException as exc:  # usage errors, raised by typer's own click
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":
            return int(ExitCode.ERROR)  # `bulwark` alone: typer has shown the help already
        hint = f": see `{ctx.command_path} --help`" if ctx is not None else ""
        formatter = getattr(exc, "format_message", None)
        message = str(formatter() if formatter is not None else exc)
        error_line(message.rstrip(".") + hint)
        return int(ExitCode.ERROR)
    except BrokenPipeError:
        # The reader went away (`bulwark ... | head`): nothing more to say to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(ExitCode.OK)
    if code == ExitCode.INTERRUPTED and "interrupted" not in _said:
        # typer turns Ctrl-C outside a command (while it parses or loads) into a silent 130.
        interrupted_line()
    return code if isinstance(code, int) else int(ExitCode.OK)


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
