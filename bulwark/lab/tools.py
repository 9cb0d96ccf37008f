"""The host programs the lab needs, installed with apt when we may, named when we may not."""

from __future__ import annotations

import os
import shutil
import subprocess

from bulwark.errors import LabError

# program -> Debian package that provides it
REQUIRED = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "debootstrap": "debootstrap",
    "mkfs.ext4": "e2fsprogs",
    "ssh": "openssh-client",  # the demo verifies its VM over OpenSSH (bulwark verify)
}


def missing_tools() -> dict[str, str]:
    return {prog: pkg for prog, pkg in REQUIRED.items() if shutil.which(prog) is None}


def ensure_tools(*, install: bool = True) -> None:
    """Make sure qemu, qemu-img, debootstrap, mkfs.ext4 and ssh are on PATH.

    As root they are installed with apt; otherwise the error names the packages to install.
    """
    missing = missing_tools()
    if not missing:
        return
    packages = sorted(set(missing.values()))
    if not install or os.geteuid() != 0:
        raise LabError(
            f"the lab needs {', '.join(sorted(missing))}: install them with "
            f"`sudo apt-get install {' '.join(packages)}`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
    ):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise LabError(f"`{' '.join(cmd)}` failed: {' '.join(tail)}")
    still = missing_tools()
    if still:
        raise LabError(f"installed {' '.join(packages)} but {', '.join(still)} is still missing")
