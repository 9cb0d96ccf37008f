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
