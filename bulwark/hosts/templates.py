"""Render the host config templates: the repository's templates/ folder, or in an installed
wheel the copy it ships as bulwark/_templates."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jinja2

SHIPPED = Path(__file__).resolve().parents[1] / "_templates"  # inside a built wheel
SOURCE = Path(__file__).resolve().parents[2] / "templates"  # a checkout (editable install)
TEMPLATES = SHIPPED if SHIPPED.is_dir() else SOURCE


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,  # a missing value is a bug, never an empty directive
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - config files, not HTML
    )


def render(name: str, **values: object) -> str:
    return _env().get_template(name).render(**values)
