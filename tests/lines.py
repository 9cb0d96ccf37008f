"""What a command wrote, as a user reads it: its progress lines (time-stamped, on stderr; on a
terminal a spinner that disappears) apart from everything else."""

from __future__ import annotations

import re

PROGRESS = re.compile(r"^\d\d:\d\d:\d\d \S")


def said(text: str) -> list[str]:
    """The non-empty lines that are not progress lines: on bad input, exactly the error."""
    return [line for line in text.splitlines() if line.strip() and not PROGRESS.match(line)]
