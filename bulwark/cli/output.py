"""How every command speaks: one output convention, one error line, consoles made on first use.

The convention (README, "Output"): `--format F` is the form of the command's result, `text`
by default; `--json` is shorthand for `--format json` on every command; `--out FILE` writes
the result to FILE instead of stdout, and stdout then carries a one-line verdict. Progress,
prompts and errors go to stderr, so stdout is only ever the result. Output that is not a
terminal is never wrapped; NO_COLOR is honoured (rich reads it).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer

from bulwark.errors import BulwarkError, ConfigError, ExitCode

if TYPE_CHECKING:
    from rich.console import Console

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def make_console(*, stderr: bool = False, file: Any = None) -> Console:
    """A terminal gets rich's usual console; a pipe or a file gets lines that are never wrapped
    (a wrapped `serviceAccount:...` or evidence line is a broken one)."""
    from rich.console import Console  # noqa: PLC0415 - rich loads when something is printed

    if file is not None:
        return Console(file=file, width=1_000_000, soft_wrap=True, no_color=True)
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=1_000_000, soft_wrap=True)


class _LazyConsole:
    """The console, made on first use: `bulwark --help` never loads rich's console."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def real(self) -> Console:
        if self._console is None:
            self._console = make_console(stderr=self._stderr)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


def real(console: Console) -> Console:
    """The console itself, for rich objects that hold it (Live, Status): they use it as a
    context manager, which a proxy's __getattr__ cannot answer."""
    return console.real() if isinstance(console, _LazyConsole) else console


out: Console = _LazyConsole(stderr=False)  # type: ignore[assignment]
err: Console = _LazyConsole(stderr=True)  # type: ignore[assignment]


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape  # noqa: PLC0415

    return rich_escape(text)


def error_line(message: str) -> None:
    """The one line every failure a user can cause ends in."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


_said: list[str] = []  # what the run already told the user it ended with


def interrupted_line(note: str = "") -> None:
    err.print(f"[yellow]interrupted[/yellow]{escape(note)}", highlight=False, soft_wrap=True)
    _said.append("interrupted")


def handles_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn library errors into one red line and a distinct exit code; Ctrl-C into 130."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except BulwarkError as exc:
            error_line(str(exc))
            raise typer.Exit(int(exc.exit_code)) from None
        except OSError as exc:
            if exc.filename is None:
                raise
            # A file the command was pointed at that the system refuses (a name too long, a
            # folder it may not read): one line naming it, as for any other bad input.
            error_line(f"{exc.filename}: {exc.strerror or exc}: check the path")
            raise typer.Exit(int(ExitCode.ERROR)) from None
        except (KeyboardInterrupt, typer.Abort):
            # typer turns Ctrl-C at a prompt into Abort.
            interrupted_line()
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None

    return wrapper


def checked(option: str, check: Callable[[object], T], value: object) -> T:
    """`check(value)`, its ValueError turned into a ConfigError that names the option."""
    try:
        return check(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None


def writable(path: Path | None, option: str) -> Path | None:
    """An output file the command will write at the end: checked before any work starts."""
    if path is None:
        return None
    from bulwark.settings.endpoints import check_path  # noqa: PLC0415 - pydantic loads late

    checked(option, check_path, path)
    parent = path.parent
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a directory: name a file to write")
    if not parent.is_dir():
        raise ConfigError(f"{option} {path}: folder {parent} does not exist: create it first")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{option} {path} is not writable: pick a file you may write")
    return path


@contextmanager
def progress(enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr whose text follows the long steps; timestamped lines otherwise."""
    if not enabled or not sys.stderr.isatty():
        # Plain lines need no console: the first one comes before the command's heavy imports.
        def line(msg: str) -> None:
            sys.stderr.write(f"{stamp()} {printable(msg)}\n")
            sys.stderr.flush()

        yield line
        return
    with err.status("starting") as status:
        yield lambda msg: status.update(escape(printable(msg)))


def printable(text: str) -> str:
    """A message holding user input, as one line a terminal shows and does not obey: control
    characters (newlines, escape sequences) written as Python escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def stamp() -> str:
    """The time prefix of a progress line in a log (CI keeps them)."""
    from datetime import datetime  # noqa: PLC0415

    return datetime.now().astimezone().strftime("%H:%M:%S")


# ----------------------------------------------------------------------------- the convention

JSON_HELP = "Shorthand for --format json."
OUT_HELP = "Write the result to FILE instead of stdout (stdout then gets a one-line verdict)."


def format_help(*formats: str) -> str:
    return f"Form of the result: {', '.join(formats)} (default {formats[0]})."


@dataclass(frozen=True)
class Output:
    """Where a command's result goes and in which form; checked before any work starts."""

    fmt: str
    path: Path | None

    @classmethod
    def choose(
        cls, fmt: str | None, as_json: bool, path: Path | None, formats: tuple[str, ...]
    ) -> Output:
        if as_json and fmt not in (None, "json"):
            raise ConfigError(f"--json means --format json: drop one of --json, --format {fmt}")
        chosen = "json" if as_json else (fmt or formats[0])
        if chosen not in formats:
            raise ConfigError(
                f"--format: {chosen!r} is not a format of this command: use one of "
                f"{', '.join(formats)}"
            )
        return cls(chosen, writable(path, "--out"))

    @property
    def text(self) -> bool:
        """The human form, to the terminal: the command prints it with rich."""
        return self.fmt == "text" and self.path is None

    def console(self) -> Console:
        """Where the text form goes."""
        return out

    def deliver(self, rendered: str, verdict: str | None = None) -> None:
        """The result, already rendered in `fmt`: to --out (then `verdict` on stdout) or stdout."""
        if not rendered.endswith("\n"):
            rendered += "\n"
        if self.path is None:
            sys.stdout.write(rendered)
            sys.stdout.flush()
            return
        self.path.write_text(rendered, encoding="utf-8")
        out.print(f"{verdict or 'wrote'}: {self.path}", highlight=False, soft_wrap=True)

    def json(self, data: object, verdict: str | None = None) -> None:
        self.deliver(as_json(data), verdict)

    def text_file(self, draw: Callable[[Console], None], verdict: str | None = None) -> None:
        """The text form into --out: drawn by the same code as on a terminal, without colour."""
        import io  # noqa: PLC0415

        buffer = io.StringIO()
        draw(make_console(file=buffer))
        self.deliver(buffer.getvalue(), verdict)

    def result(
        self,
        data: Callable[[], object],
        draw: Callable[[Console], None],
        verdict: str | None = None,
    ) -> None:
        """The usual end of a command: JSON, or text to the terminal or into --out."""
        if self.fmt == "json":
            self.json(data(), verdict)
        elif self.path is None:
            draw(out)
        else:
            self.text_file(draw, verdict)


def as_json(data: object) -> str:
    return json.dumps(data, indent=2, default=str) + "\n"
