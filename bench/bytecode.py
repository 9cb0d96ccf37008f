"""Python's bytecode cache, for benchmarks that start bulwark processes.

Whether imports find compiled bytecode decides a second or more of every process start
(pyinfra, paramiko, testinfra, pydantic and bulwark itself are compiled from source otherwise).
Both states are measured apart from the venv's own `__pycache__` folders:

- cold: an empty PYTHONPYCACHEPREFIX and PYTHONDONTWRITEBYTECODE=1, so every import compiles
  from source (a fresh `uv sync`, which does not compile bytecode, or a machine that sets
  PYTHONDONTWRITEBYTECODE, as this project's CI machine does);
- warm: a PYTHONPYCACHEPREFIX filled by one earlier run (any later run on a normal install,
  or right after `pip install`, which compiles).
"""

from __future__ import annotations

import os
from pathlib import Path


def env_for(cache: Path, write: bool) -> dict[str, str]:
    """The environment of a process that reads (and, if `write`, fills) the cache at `cache`."""
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(cache))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env
