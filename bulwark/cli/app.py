"""The `bulwark` command tree; the commands register themselves from their modules."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
import typer.core
from typer.models import CommandFunctionType


class Command(typer.core.TyperCommand):
    """Usage lines as click writes them: a required argument is `HOST`, not typer's `{HOST}`."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in pieces]


class Typer(typer.Typer):
    """typer.Typer whose commands are `Command`s."""

    def command(
        self, *args: Any, **kwargs: Any
    ) -> Callable[[CommandFunctionType], CommandFunctionType]:
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)


# Plain click help (no rich panels): it starts faster, and shows flags as flags.
app = Typer(
    name="bulwark",
    help="Provision a production platform, harden its hosts, and prove it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
lab_app = Typer(
    help="Disposable local VMs that look like a provider's fresh VPS.", rich_markup_mode=None
)
pooler_app = Typer(help="The transaction pooler: what apps meet behind it.", rich_markup_mode=None)
app.add_typer(lab_app, name="lab")
app.add_typer(pooler_app, name="pooler")

# What `bulwark --version` reports beside bulwark itself: the engines it drives.
ENGINES = ("pulumi", "pulumi-gcp", "pulumi-policy", "pyinfra", "pytest-testinfra", "paramiko")


def _version(value: bool) -> None:
    """`--version`: bulwark's version and its engines', read from package metadata (nothing
    is imported)."""
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    lines = [f"bulwark {of('bulwark')}", *(f"  {name} {of(name)}" for name in ENGINES)]
    sys.stdout.write("\n".join(lines) + "\n")  # plain text: no console to load
    raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_version,
            help="Print bulwark's version and those of pulumi, pulumi-gcp, pyinfra and testinfra.",
        ),
    ] = False,
) -> None:
    """Provision a production platform, harden its hosts, and prove it."""
