"""Lab tests boot real qemu VMs; they are marked `lab` and run in CI too (never skipped).

They also run first, longest module first: pytest-xdist (`-n 3 --dist loadfile
--no-loadscope-reorder`, see pyproject.toml; by default it would order files by their number of
tests) hands each worker whole modules in this order, so the 20-minute modules start at once
and the short ones fill in behind them.
"""

from __future__ import annotations

import pytest

# Longest first, paired so that no worker gets two long ones: harden + lab_cli, verify +
# bootstrap, trixie alone (figures in docs/benchmarks.md, "The test suite").
LAB_ORDER = ("test_harden", "test_verify", "test_harden_trixie", "test_lab_cli", "test_bootstrap")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/lab/" in str(item.path):
            item.add_marker(pytest.mark.lab)

    def rank(item: pytest.Item) -> int:
        stem = item.path.stem
        return LAB_ORDER.index(stem) if "tests/lab/" in str(item.path) and stem in LAB_ORDER \
            else len(LAB_ORDER)  # fmt: skip

    items.sort(key=rank)  # stable: within a module, file order (the tests build on each other)
