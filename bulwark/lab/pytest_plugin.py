"""pytest fixtures for lab VMs (registered as the `bulwark-lab` pytest plugin).

- `lab_vms`: a module-scoped factory; the VMs it boots are shared by the module's tests and
  stopped when the module ends (or the run fails or is interrupted).
- `fresh_lab_vm`: a factory for tests that need a pristine host of their own.

Images are cached across runs; a missing tool is installed (as root) or fails the test. A lab
test never skips: if the lab cannot run, the test errors, so CI goes red.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from bulwark.lab import vm as lab
from bulwark.lab.tools import ensure_tools

Boot = Callable[..., lab.LabVM]


@pytest.fixture(scope="session")
def lab_ready() -> None:
    """The lab's host tools are present (installed with apt when running as root)."""
    ensure_tools()


def _booting() -> Iterator[Boot]:
    """Yield a boot function; stop every VM it booted when the fixture ends."""
    started: list[lab.LabVM] = []

    def boot(**spec: object) -> lab.LabVM:
        vm = lab.start(lab.VMSpec(**spec))  # type: ignore[arg-type]
        started.append(vm)
        return vm

    try:
        yield boot
    finally:
        for vm in started:
            lab.stop(vm)


@pytest.fixture(scope="module")
def lab_vms(lab_ready: None) -> Iterator[Boot]:
    """Boot VMs shared by one test module: `lab_vms(distro="trixie", auth="password")`."""
    yield from _booting()


@pytest.fixture
def fresh_lab_vm(lab_ready: None) -> Iterator[Boot]:
    """Boot VMs that belong to one test only."""
    yield from _booting()
