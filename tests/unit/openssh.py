"""What OpenSSH itself makes of a config bulwark wrote: the real parser, not a friendlier one."""

from __future__ import annotations

import subprocess
from pathlib import Path


def openssh_reads(config: Path, alias: str) -> dict[str, str]:
    """`ssh -G -F config alias`: the first value OpenSSH settles on for each keyword."""
    done = subprocess.run(
        ["ssh", "-G", "-F", str(config), alias], capture_output=True, text=True, check=True
    )
    seen: dict[str, str] = {}
    for line in done.stdout.splitlines():
        keyword, _, value = line.partition(" ")
        seen.setdefault(keyword, value)
    return seen
