"""Lab tests boot real qemu VMs; they are marked `lab` and run in CI too (never skipped).

The suite runs on two pytest-xdist workers, one per core (`-n 2 --dist loadfile
--no-loadscope-reorder`, see pyproject.toml): two TCG guests at once use the machine fully,
a third only slows all three down. xdist hands whole modules out in collection order, each to
the first worker that runs dry, so the lab modules come first, longest first: trixie and
harden start at once, verify follows harden, lab_cli then bootstrap follow trixie (module
times: docs/benchmarks.md, "The test suite").
`--dist loadgroup` would name the chains outright, but pytest-xdist 3.8 cannot regroup pytest
9's node ids.
"""

from __future__ import annotations

import pytest

LAB_ORDER = (
    "test_harden_trixie",
    "test_harden",
    "test_verify",
    "test_lab_cli",
    "test_bootstrap",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        stem = item.path.stem
        lab = "tests/lab/" in str(item.path)
        return LAB_ORDER.index(stem) if lab and stem in LAB_ORDER else len(LAB_ORDER)

    for item in items:
        if "tests/lab/" in str(item.path):
            item.add_marker(pytest.mark.lab)
    items.sort(key=rank)  # stable: within a module, file order (the tests build on each other)
