"""Lab VMs: qemu guests booted from a qcow2 overlay of a cached image, SSH on 127.0.0.1.

A VM looks like a provider's fresh VPS: root reachable with an injected key (the default) or
with a password and password login enabled. Each VM lives in its own directory under the state
directory (overlay, console log, root credentials, known_hosts, vm.json); stopping it ends qemu
by PID and removes the directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from bulwark import dirs
from bulwark.errors import LabError
from bulwark.lab import ntp
from bulwark.lab.image import DEFAULT_DISTRO, Image, Recipe, ensure_image
from bulwark.lab.ports import lab_dir

if TYPE_CHECKING:
    import paramiko

    from bulwark.hosts.ssh import Login, Target

Auth = Literal["key", "password"]
Progress = Callable[[str], None]

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
BOOT_TIMEOUT = 300.0  # TCG on a loaded 2-core machine; a KVM boot takes a few seconds
HOST_KEY_LINE = re.compile(r"bulwark-lab host key: \d+ (SHA256:\S+) .*\((\w+)\)")
PR_SET_PDEATHSIG = 1
KEYSCAN_TRIES = 3  # ssh-keyscan rounds for host key types a busy guest did not answer in time


@dataclass(frozen=True)
class VMSpec:
    """What to boot: distro, how root gets in, guest ports to forward, size."""

    name: str = ""
    distro: str = DEFAULT_DISTRO
    auth: Auth = "key"
    forwards: tuple[int, ...] = ()
    memory_mb: int = 1024
    cpus: int = 1

    def __post_init__(self) -> None:
        Recipe(distro=self.distro)  # validates the distro before anything starts
        if self.name and not NAME_RE.fullmatch(self.name):
            raise LabError(
                f"lab VM name {self.name!r} is invalid: use lowercase letters, digits and '-'"
            )
        if self.auth not in ("key", "password"):
            raise LabError(f"lab auth {self.auth!r} is invalid: use 'key' or 'password'")
        for port in self.forwards:
            if not 1 <= port <= 65535 or port == 22:
                raise LabError(
                    f"forwarded port {port} is invalid: use a guest port in 1-65535 other than "
                    "22 (SSH is always forwarded)"
                )
        if not 256 <= self.memory_mb <= 65536:
            raise LabError(f"--memory {self.memory_mb} is invalid: use 256-65536 MiB")
        if not 1 <= self.cpus <= 64:
            raise LabError(f"--cpus {self.cpus} is invalid: use 1-64")


@dataclass
class LabVM:
    """A running lab VM, as recorded in its vm.json."""

    name: str
    distro: str
    auth: Auth
    directory: Path
    pid: int
    ssh_port: int
    accel: str
    forwards: dict[int, int] = field(default_factory=dict)
    host_key_fingerprints: dict[str, str] = field(default_factory=dict)
    started_at: float = 0.0

    @property
    def target(self) -> Target:
        from bulwark.hosts.ssh import Target  # noqa: PLC0415 - SSH loads when a VM is reached

        return Target("127.0.0.1", self.ssh_port)

    @property
    def root_key_path(self) -> Path:
        return self.directory / "root_ed25519"

    @property
    def password_file(self) -> Path:
        return self.directory / "root-password"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    def root_login(self) -> Login:
        """How the provider lets root in: its injected key, or its password."""
        from bulwark.hosts.keys import ensure_key  # noqa: PLC0415
        from bulwark.hosts.ssh import Login  # noqa: PLC0415

        if self.auth == "password":
            return Login("root", password=self.password_file.read_text().strip())
        key, _ = ensure_key(self.root_key_path)
        return Login("root", key=key)

    def port(self, guest_port: int) -> int:
        """The 127.0.0.1 port forwarded to `guest_port`."""
        if guest_port == 22:
            return self.ssh_port
        try:
            return self.forwards[guest_port]
        except KeyError:
            raise LabError(
                f"guest port {guest_port} of {self.name} is not forwarded: "
                f"start the VM with --forward {guest_port}"
            ) from None

    def is_running(self) -> bool:
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return False
        return str(self.directory).encode() in cmdline

    def save(self) -> None:
        data = asdict(self) | {"directory": str(self.directory)}
        data["forwards"] = {str(k): v for k, v in self.forwards.items()}
        tmp = self.directory / "vm.json.tmp"
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.rename(self.directory / "vm.json")

    @classmethod
    def load(cls, directory: Path) -> LabVM:
        data = json.loads((directory / "vm.json").read_text())
        data["directory"] = Path(data["directory"])
        data["forwards"] = {int(k): v for k, v in data["forwards"].items()}
        return cls(**data)


NTP_PIDFILE = "ntp.pid"


def running() -> list[LabVM]:
    """The lab VMs that are running; leftovers of dead ones are removed on the way."""
    found = []
    for vm_json in sorted(lab_dir().glob("*/vm.json")):
        try:
            vm = LabVM.load(vm_json.parent)
        except (OSError, ValueError, TypeError):
            continue
        if vm.is_running():
            found.append(vm)
        else:
            shutil.rmtree(vm.directory, ignore_errors=True)
    return found


def find(name: str) -> LabVM:
    for vm in running():
        if vm.name == name:
            return vm
    raise LabError(f"no running lab VM named {name!r}: see `bulwark lab list`")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def detect_accel(image: Image) -> str:
    """'kvm' only when a KVM guest really starts here; 'tcg' otherwise. Cached per qemu+kernel.

    /dev/kvm can exist while a guest still hangs at kernel start, so we boot the image's kernel
    with no root disk and wait briefly for it to panic, which proves it ran.
    """
    forced = os.environ.get("BULWARK_LAB_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    cache = dirs.cache_dir() / "accel.json"
    qemu = shutil.which("qemu-system-x86_64") or ""
    key = f"{qemu}:{os.stat(qemu).st_mtime_ns}:{image.directory.name}"
    with contextlib.suppress(OSError, ValueError):
        cached = json.loads(cache.read_text())
        if cached.get("key") == key:
            return str(cached["accel"])
    accel = "tcg"
    try:
        done = subprocess.run(
            [
                "qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "256",
                "-kernel", str(image.kernel), "-append", "console=ttyS0 panic=-1",
                "-no-reboot", "-nographic", "-nodefaults", "-serial", "stdio",
            ],
            capture_output=True, timeout=20, check=False,
        )  # fmt: skip
        if b"Kernel panic" in done.stdout or b"VFS:" in done.stdout:
            accel = "kvm"
    except subprocess.TimeoutExpired:
        pass
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"key": key, "accel": accel}))
    return accel


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel kills qemu if its parent dies (tests, demo)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def start(
    spec: VMSpec,
    *,
    detach: bool = False,
    pin_keys: bool = False,
    progress: Progress | None = None,
) -> LabVM:
    """Boot a fresh VM and return once its sshd answers.

    `detach=False` ties qemu to this process (it dies if we die), as tests and the demo want;
    `detach=True` leaves it running for `lab down`. `pin_keys` pins the guest's host keys in its
    known_hosts, checked against its console (`lab up`; the demo and the tests leave that to
    bootstrap's first contact, which they check against the console themselves). On any failure,
    including Ctrl-C, the VM is stopped and its files removed.
    """
    say = progress or (lambda _msg: None)
    say(f"preparing the {spec.distro} image")
    image = ensure_image(Recipe(distro=spec.distro), progress=say)
    accel = detect_accel(image)
    name = spec.name or f"{spec.distro}-{secrets.token_hex(3)}"
    directory = lab_dir() / name
    if (directory / "vm.json").exists() and any(vm.name == name for vm in running()):
        raise LabError(f"lab VM {name!r} is already running: pick another name or `lab down` it")
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, mode=0o700)
    vm = LabVM(name, spec.distro, spec.auth, directory, 0, 0, accel, started_at=time.time())
    try:
        _launch(vm, spec, image, detach=detach, say=say)
        say(f"booting {name} ({accel.upper()}); waiting for sshd on 127.0.0.1:{vm.ssh_port}")
        _wait_for_ssh(vm)
        vm.host_key_fingerprints = _host_keys_from_console(vm)
        if pin_keys:
            say(f"pinning {name}'s host keys, checked against its console")
            pin_host_keys(vm)
        vm.save()
    except BaseException:
        stop(vm)
        raise
    return vm


def _launch(vm: LabVM, spec: VMSpec, image: Image, *, detach: bool, say: Progress) -> None:
    directory = vm.directory
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image.root),
         str(directory / "overlay.qcow2")],
        check=True, capture_output=True,
    )  # fmt: skip
    from bulwark.hosts.keys import ensure_key  # noqa: PLC0415 - `lab list` loads no SSH code

    root_key, _ = ensure_key(vm.root_key_path)
    fw_cfg = {"hostname": vm.name, "authorized_keys": root_key.public_line}
    if spec.auth == "password":
        _write_secret(vm.password_file, secrets.token_urlsafe(18) + "\n")
        fw_cfg["root_password"] = vm.password_file.read_text().strip()
    for item, value in fw_cfg.items():
        _write_secret(directory / f"fw_cfg.{item}", value)
    accel_args = ["-accel", "kvm", "-cpu", "host"] if vm.accel == "kvm" else ["-accel", "tcg"]
    # The guest's clock is kept by systemd-timesyncd against the lab's time server.
    unserved = ntp.ensure(lab_dir() / NTP_PIDFILE)
    if unserved:
        say(f"no time server for lab guests ({unserved}): their clocks may drift")
    for _attempt in range(3):
        vm.ssh_port = _free_port()
        vm.forwards = {guest: _free_port() for guest in spec.forwards}
        hostfwd = ",".join(
            f"hostfwd=tcp:127.0.0.1:{host}-:{guest}"
            for guest, host in [(22, vm.ssh_port), *vm.forwards.items()]
        )
        cmd = [
            "qemu-system-x86_64", "-name", f"bulwark-lab-{vm.name}", *accel_args,
            "-m", str(spec.memory_mb), "-smp", str(spec.cpus),
            "-kernel", str(image.kernel), "-initrd", str(image.initrd),
            # tsc=reliable: on a busy host the kernel's clocksource watchdog reads emulation
            # delays as an unstable TSC and switches clocksource, which drops NTP sync (verify's
            # time-sync then fails until timesyncd's next poll); a provider's VPS has kvm-clock.
            "-append", "root=/dev/vda rw console=ttyS0 tsc=reliable",
            "-drive", f"file={directory / 'overlay.qcow2'},format=qcow2,if=virtio",
            # addr=0x3 names the NIC ens3, as the image's /etc/network/interfaces expects.
            "-netdev", f"user,id=n0,{hostfwd}", "-device", "virtio-net-pci,netdev=n0,addr=0x3",
            "-display", "none", "-monitor", "none", "-nodefaults",
            "-serial", f"file:{directory / 'console.log'}",
            "-device", "virtio-rng-pci",
            *(arg for item in fw_cfg for arg in
              ("-fw_cfg", f"name=opt/bulwark/{item},file={directory}/fw_cfg.{item}")),
        ]  # fmt: skip
        log = (directory / "qemu.log").open("wb")
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if detach else _die_with_parent,  # noqa: PLW1509
        )
        log.close()
        vm.pid = proc.pid
        vm.save()
        time.sleep(0.5)
        if proc.poll() is None:
            return
        error = (directory / "qemu.log").read_text(errors="replace").strip()
        if "hostfwd" not in error and "forwarding" not in error:
            raise LabError(f"qemu exited at start: {error.splitlines()[-1:] or 'no output'}")
        say("a forwarded port was taken meanwhile; retrying with other ports")
    raise LabError("could not bind free 127.0.0.1 ports for the VM's forwards")


def _wait_for_ssh(vm: LabVM) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        if not vm.is_running():
            raise LabError(f"lab VM {vm.name} stopped while booting: {_console_tail(vm)}")
        # qemu accepts the TCP connection itself before the guest listens; only a banner counts.
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", vm.ssh_port), timeout=5) as s,
        ):
            s.settimeout(10)
            if s.recv(64).startswith(b"SSH-"):
                return
        time.sleep(1)
    raise LabError(
        f"lab VM {vm.name} did not answer SSH within {BOOT_TIMEOUT:.0f}s: {_console_tail(vm)}"
    )


def _console_tail(vm: LabVM) -> str:
    try:
        lines = (vm.directory / "console.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no console output"
    return " | ".join(line.strip() for line in lines[-3:]) or "no console output"


def _host_keys_from_console(vm: LabVM) -> dict[str, str]:
    """The host key fingerprints the guest printed at first boot, as a provider's console shows.

    They let the lab (and its tests) check that trust-on-first-use pinned the genuine key.
    """
    text = (vm.directory / "console.log").read_text(errors="replace")
    return {m.group(2): m.group(1) for m in HOST_KEY_LINE.finditer(text)}


def pin_host_keys(vm: LabVM) -> list[str]:
    """Pin the guest's host keys in `vm.known_hosts`, checked out of band: each key ssh-keyscan
    is offered must have a fingerprint the guest printed on its console at first boot (as a
    provider's console shows them), or nothing is pinned. `lab ssh`, and inventories naming the
    file, then start from keys nobody had to trust on first use. A busy machine can leave a
    guest's key exchange slower than keyscan waits: the types still missing are asked for again
    (KEYSCAN_TRIES in all). Returns the pinned key types."""
    from bulwark.hosts.keys import fingerprint  # noqa: PLC0415 - `lab list` loads no SSH code
    from bulwark.hosts.ssh import KnownHosts  # noqa: PLC0415

    printed = vm.host_key_fingerprints
    if not printed:
        raise LabError(
            f"lab VM {vm.name} printed no host key fingerprints: nothing to check keys by"
        )
    found: dict[str, paramiko.PKey] = {}
    detail = "no output"
    for _try in range(KEYSCAN_TRIES):
        missing = sorted(kind.lower() for kind, fp in printed.items() if fp not in found)
        if not missing:
            break
        scan = subprocess.run(
            ["ssh-keyscan", "-T", "60", "-t", ",".join(missing), "-p", str(vm.ssh_port),
             "127.0.0.1"],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        detail = (scan.stderr.strip().splitlines() or [detail])[-1]
        for key in _scanned_keys(vm, scan.stdout):
            if fingerprint(key) not in printed.values():
                raise LabError(
                    f"lab VM {vm.name} offered a {key.get_name()} host key "
                    f"({fingerprint(key)}) its console never printed: nothing pinned"
                )
            found[fingerprint(key)] = key
    if not found:
        raise LabError(f"ssh-keyscan got no host key from lab VM {vm.name}: {detail}")
    known = KnownHosts(vm.known_hosts)
    have = {key.get_base64() for key in known.keys_for(vm.target).values()}
    for key in found.values():
        if key.get_base64() not in have:
            known.pin(vm.target.known_hosts_name, key)
    return [key.get_name() for key in found.values()]


def _scanned_keys(vm: LabVM, output: str) -> list[paramiko.PKey]:
    """The keys in ssh-keyscan's known_hosts lines (types paramiko cannot read are skipped)."""
    from paramiko.hostkeys import HostKeyEntry, InvalidHostKey  # noqa: PLC0415

    keys = []
    for line in output.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        try:
            entry = HostKeyEntry.from_line(line)
        except InvalidHostKey as err:
            raise LabError(
                f"ssh-keyscan printed a line that is no host key for {vm.name}: {err}"
            ) from None
        if entry is not None and entry.key is not None:
            keys.append(entry.key)
    return keys


def stop(vm: LabVM, *, timeout: float = 10.0) -> None:
    """End the VM's qemu by PID and remove its files."""
    if vm.pid and vm.is_running():
        with contextlib.suppress(ProcessLookupError):
            os.kill(vm.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while vm.is_running() and time.monotonic() < deadline:
            time.sleep(0.1)
        if vm.is_running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(vm.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(vm.pid, os.WNOHANG)
    shutil.rmtree(vm.directory, ignore_errors=True)
    if not running():  # the last lab VM is gone: so is the need for its time server
        ntp.stop(lab_dir() / NTP_PIDFILE)


@contextlib.contextmanager
def booted(spec: VMSpec, progress: Progress | None = None) -> Iterator[LabVM]:
    """A VM for the duration of a `with` block: stopped and removed on exit, error or Ctrl-C."""
    vm = start(spec, detach=False, progress=progress)
    try:
        yield vm
    finally:
        stop(vm)
