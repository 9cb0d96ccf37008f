"""Debian base images for lab VMs: debootstrap + Debian's cloud kernel, cached by recipe.

An image is a raw ext4 root file system plus the kernel and initrd to boot it directly (no
bootloader). Images live in the user's cache directory under a name that includes the hash of
their recipe, so a changed recipe builds a new image and an unchanged one is reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from bulwark import dirs
from bulwark.errors import LabError

DISTROS = ("bookworm", "trixie")
DEFAULT_DISTRO = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# A provider's fresh VPS: a small Debian with systemd, sshd, sudo and python3 (pyinfra needs it).
# libpam-systemd: openssh-server and systemd-sysv recommend it and Debian's cloud images depend on
# it, so on a real VPS every SSH login is a logind session with its user's systemd manager;
# debootstrap installs no recommends, so it is named here.
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "libpam-systemd",
    "udev",
    "kmod",
    "dbus",
    "openssh-server",
    "openssh-sftp-server",
    "iproute2",
    "ifupdown",
    "isc-dhcp-client",
    "netbase",
    "python3",
    "sudo",
    "ca-certificates",
    "procps",
    "systemd-timesyncd",
)
KERNEL_PACKAGES = ("linux-image-cloud-amd64", "initramfs-tools")
# Bump when the build steps below change in a way the fields do not capture.
RECIPE_VERSION = 2
IMAGE_SIZE = "6G"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Recipe:
    """Everything that determines an image's content; its hash names the cached image."""

    distro: str = DEFAULT_DISTRO
    mirror: str = DEFAULT_MIRROR
    packages: tuple[str, ...] = BASE_PACKAGES
    kernel_packages: tuple[str, ...] = KERNEL_PACKAGES
    version: int = RECIPE_VERSION

    def __post_init__(self) -> None:
        if self.distro not in DISTROS:
            raise LabError(f"unknown lab distro {self.distro!r}: use one of {', '.join(DISTROS)}")

    @property
    def digest(self) -> str:
        data = asdict(self) | {"guest_files": _guest_files_digest()}
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


@dataclass(frozen=True)
class Image:
    """A built image: boot `kernel` + `initrd` with root=/dev/vda on (an overlay of) `root`."""

    recipe: Recipe
    directory: Path

    @property
    def root(self) -> Path:
        return self.directory / "root.raw"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    def is_complete(self) -> bool:
        return all(p.is_file() for p in (self.root, self.kernel, self.initrd))


GUEST_FILES = ("bulwark-lab-init", "bulwark-lab-init.service", "bulwark-lab-timesyncd.conf")


def _guest_files_digest() -> str:
    h = hashlib.sha256()
    for name in GUEST_FILES:
        h.update(resources.files("bulwark.lab.guest").joinpath(name).read_bytes())
    return h.hexdigest()


def images_dir() -> Path:
    return dirs.cache_dir() / "images"


def image_for(recipe: Recipe) -> Image:
    return Image(recipe, images_dir() / f"{recipe.distro}-{recipe.digest}")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_image(recipe: Recipe, progress: Progress | None = None) -> Image:
    """Return the cached image for `recipe`, building it first when it is missing."""
    image = image_for(recipe)
    if image.is_complete():
        return image
    with _locked(images_dir() / f"{recipe.distro}.lock"):
        if image.is_complete():  # built by another process while we waited
            return image
        _build(image, progress or (lambda _msg: None))
        _remove_stale(image)
    return image


def _remove_stale(current: Image) -> None:
    """Old recipes of the same distro are never used again: free their disk."""
    for other in images_dir().glob(f"{current.recipe.distro}-*"):
        if other.is_dir() and other != current.directory:
            shutil.rmtree(other, ignore_errors=True)


def _run(cmd: list[str], what: str, **kwargs: object) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise LabError(
            f"{what} failed (`{cmd[0]}` exit {done.returncode}): {' | '.join(lines[-3:])}"
        )


def _build(image: Image, progress: Progress) -> None:
    if os.geteuid() != 0:
        raise LabError(
            "building a lab image needs root (debootstrap, chroot, mount): "
            "run it once with sudo, or as root"
        )
    recipe = image.recipe
    images_dir().mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".build-{recipe.distro}-", dir=images_dir()))
    tree = work / "tree"
    try:
        progress(f"debootstrap {recipe.distro} (about a minute)")
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(recipe.packages)}",
                recipe.distro,
                str(tree),
                recipe.mirror,
            ],
            f"debootstrap {recipe.distro}",
        )
        progress("upgrading from updates and security, installing Debian's cloud kernel")
        _write_sources(tree, recipe)
        _install_kernel(tree, recipe)
        progress("configuring the guest like a provider's fresh VPS")
        _configure(tree)
        out = work / "out"
        out.mkdir()
        kernels = sorted((tree / "boot").glob("vmlinuz-*"))
        initrds = sorted((tree / "boot").glob("initrd.img-*"))
        if not kernels or not initrds:
            raise LabError(f"no kernel or initrd in the {recipe.distro} image: check the mirror")
        shutil.copy2(kernels[-1], out / "vmlinuz")
        shutil.copy2(initrds[-1], out / "initrd.img")
        progress("writing the root file system")
        _run(
            ["mkfs.ext4", "-q", "-L", "root", "-d", str(tree), str(out / "root.raw"), IMAGE_SIZE],
            "mkfs.ext4",
        )
        (out / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2) + "\n")
        if image.directory.exists():
            shutil.rmtree(image.directory)
        out.rename(image.directory)
    finally:
        _unmount_all(tree)
        shutil.rmtree(work, ignore_errors=True)


def _unmount_all(tree: Path) -> None:
    for sub in ("dev/pts", "dev", "proc", "sys"):
        mnt = tree / sub
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True)


def _install_kernel(tree: Path, recipe: Recipe) -> None:
    _run(["mount", "-t", "proc", "proc", str(tree / "proc")], "mount /proc")
    _run(["mount", "--bind", "/dev", str(tree / "dev")], "bind /dev")
    try:
        # Providers refresh their images: a fresh VPS is close to current, not months behind.
        _run(["chroot", str(tree), "apt-get", "update", "-q"], "apt-get update")
        _run(["chroot", str(tree), "apt-get", "dist-upgrade", "-y", "-q"], "apt-get dist-upgrade")
        _run(
            [
                "chroot",
                str(tree),
                "apt-get",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                *recipe.kernel_packages,
            ],
            "installing the kernel",
        )
        _run(["chroot", str(tree), "apt-get", "clean"], "apt-get clean")
    finally:
        _unmount_all(tree)


def _write_sources(tree: Path, recipe: Recipe) -> None:
    """The archive, its updates and the security archive, as on a provider's Debian image."""
    etc = tree / "etc"
    (etc / "apt" / "sources.list").unlink(missing_ok=True)
    security = recipe.mirror.rstrip("/") + "-security"
    (etc / "apt" / "sources.list.d" / "debian.sources").write_text(
        f"Types: deb\nURIs: {recipe.mirror}\nSuites: {recipe.distro} {recipe.distro}-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {security}\nSuites: {recipe.distro}-security\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )


def _configure(tree: Path) -> None:
    etc = tree / "etc"
    (etc / "fstab").write_text("/dev/vda / ext4 defaults,errors=remount-ro 0 1\n")
    (etc / "hostname").write_text("bulwark-lab\n")
    (etc / "network" / "interfaces").write_text(
        "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n\n"
        "allow-hotplug ens3\niface ens3 inet dhcp\n"
    )
    # qemu's user-mode network answers DNS on 10.0.2.3.
    resolv = etc / "resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.write_text("nameserver 10.0.2.3\n")
    # Each VM gets its own machine id at first boot; firstboot would prompt on the console.
    (etc / "machine-id").write_text("")
    (etc / "systemd" / "system" / "systemd-firstboot.service").unlink(missing_ok=True)
    (etc / "systemd" / "system" / "systemd-firstboot.service").symlink_to("/dev/null")
    # Host keys are made per VM at first boot by the init unit.
    for key in (etc / "ssh").glob("ssh_host_*"):
        key.unlink()
    guest = resources.files("bulwark.lab.guest")
    script = tree / "usr" / "local" / "sbin" / "bulwark-lab-init"
    script.write_bytes(guest.joinpath("bulwark-lab-init").read_bytes())
    script.chmod(0o755)
    unit = etc / "systemd" / "system" / "bulwark-lab-init.service"
    unit.write_bytes(guest.joinpath("bulwark-lab-init.service").read_bytes())
    wants = etc / "systemd" / "system" / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "bulwark-lab-init.service").unlink(missing_ok=True)
    (wants / "bulwark-lab-init.service").symlink_to("/etc/systemd/system/bulwark-lab-init.service")
    timesyncd = etc / "systemd" / "timesyncd.conf.d"
    timesyncd.mkdir(parents=True, exist_ok=True)
    (timesyncd / "bulwark-lab.conf").write_bytes(
        guest.joinpath("bulwark-lab-timesyncd.conf").read_bytes()
    )
    (tree / "root" / ".ssh").mkdir(mode=0o700, exist_ok=True)
