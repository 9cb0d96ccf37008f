"""Lab tests boot real qemu VMs; they are marked `lab` and run in CI too (never skipped)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/lab/" in str(item.path):
            item.add_marker(pytest.mark.lab)
