"""Stand-ins the operation tests share: pyinfra's `host` as an operation sees it, and programs
a command reaches through PATH, so a command bulwark yields runs through a real sh."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any


class FakeHost:
    """pyinfra's `host` as the operation sees it: facts come from recorded output, parsed by the
    real fact classes; not in --diff; outside a harden (no upload directory: files.put)."""

    name = "web1"

    def __init__(self, output: list[str]) -> None:
        self.output = output
        self.noops: list[str] = []
        self.state: Any = SimpleNamespace(config=SimpleNamespace(DIFF=False))
        self.current_op_global_arguments: dict[str, Any] | None = None

    def get_fact(self, cls: type[Any], **kwargs: Any) -> Any:
        return cls().process(self.output)

    def noop(self, message: str) -> None:
        self.noops.append(message)


def stub_programs(directory: Path, log: Path, **statuses: int) -> None:
    """Programs named by `statuses` (dashes as underscores) in `directory`: each appends
    "<name> <args>" to `log` and exits with its status."""
    for name, status in statuses.items():
        program = directory / name.replace("_", "-")
        program.write_text(
            f'#!/bin/sh\necho "{program.name} $*" >> {log}\nexit {status}\n', encoding="utf-8"
        )
        program.chmod(0o755)


def sh(
    command: str, path_first: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """`command` through sh, with `path_first` (stand-in programs) ahead of the real PATH."""
    path = os.environ["PATH"] if path_first is None else f"{path_first}:{os.environ['PATH']}"
    return subprocess.run(
        ["sh", "-c", command],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": path, **env},
    )
