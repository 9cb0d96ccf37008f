"""Where bulwark keeps files outside the project: caches (rebuildable) and state (running VMs)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "bulwark"


def cache_dir() -> Path:
    """Rebuildable data (lab images); BULWARK_CACHE_DIR overrides it, e.g. in CI."""
    override = os.environ.get("BULWARK_CACHE_DIR")
    return Path(override) if override else platformdirs.user_cache_path(APP)


def state_dir() -> Path:
    """Live state (running lab VMs, demo workspace); BULWARK_STATE_DIR overrides it."""
    override = os.environ.get("BULWARK_STATE_DIR")
    return Path(override) if override else platformdirs.user_state_path(APP)


# What marks a bulwark project's root: its Pulumi program's project file.
PROJECT_MARKER = "Pulumi.yaml"


def project_root(start: Path | None = None) -> Path | None:
    """The nearest folder at or above `start` (default: the current one) holding Pulumi.yaml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PROJECT_MARKER).is_file():
            return folder
    return None


def trust_dir() -> Path:
    """The host trust store (pinned host keys, access proofs), found the same way from any
    folder: BULWARK_TRUST_DIR, else `hosts/` of the project around the current folder, else
    bulwark's per-user data folder. Never a folder that merely happens to be named `hosts`."""
    override = os.environ.get("BULWARK_TRUST_DIR")
    if override:
        return Path(override).expanduser()
    root = project_root()
    if root is not None:
        return root / "hosts"
    return platformdirs.user_data_path(APP) / "hosts"
