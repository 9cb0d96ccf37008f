"""The lab's time server: a provider's VPS keeps time with the provider's NTP server, so lab
guests get one too. qemu's user network sends a guest's 10.0.2.2:123/udp to this machine's
127.0.0.1:123, where this answers SNTP (RFC 4330) with this machine's clock; the guest image
points systemd-timesyncd at 10.0.2.2. Without it an emulated guest's clock drifts seconds per
quarter hour away from the controller's, and verification rightly says so.

    python -m bulwark.lab.ntp --pidfile FILE     (started and stopped by bulwark.lab.vm)

Binding port 123 needs root (the lab builds its images as root anyway); without it, or with
the port taken, guests simply have no time server and the lab says so.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

PORT = 123
NTP_EPOCH = 2208988800  # seconds from 1900-01-01 (NTP's epoch) to 1970-01-01
STRATUM = 10  # a local clock, as chrony's `local stratum 10` serves it
REFERENCE_ID = b"LOCL"
PRECISION = -20  # about a microsecond, as log2 seconds
DISPERSION = int(0.01 * 65536)  # 10 ms, in NTP's 16.16 fixed point


def stamp(t: float) -> bytes:
    """An NTP timestamp: 32-bit seconds since 1900 and a 32-bit fraction."""
    seconds, fraction = divmod(t + NTP_EPOCH, 1)
    return struct.pack("!II", int(seconds) & 0xFFFFFFFF, int(fraction * 2**32) & 0xFFFFFFFF)


def answer(request: bytes, received: float, now: float) -> bytes | None:
    """The server's reply to a client request (mode 3), or None for anything else."""
    if len(request) < 48 or request[0] & 0x7 != 3:
        return None
    version = (request[0] >> 3) & 0x7
    header = struct.pack(
        "!BBbbII4s", (version << 3) | 4, STRATUM, request[2], PRECISION, 0, DISPERSION,
        REFERENCE_ID,
    )  # fmt: skip
    # reference, origin (the client's transmit time, echoed), receive, transmit
    return header + stamp(now) + request[40:48] + stamp(received) + stamp(now)


def serve(sock: socket.socket) -> None:
    while True:
        request, client = sock.recvfrom(512)
        received = time.time()
        reply = answer(request, received, time.time())
        if reply is not None:
            sock.sendto(reply, client)


def is_ours(pid: int) -> bool:
    """Whether `pid` is a running lab time server (never signal anything else)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"bulwark.lab.ntp" in cmdline


def running(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if is_ours(pid) else None


def ensure(pidfile: Path) -> str | None:
    """Start the time server unless one runs; None when guests are served, else the reason."""
    if running(pidfile):
        return None
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    log = pidfile.with_suffix(".log")  # a file, not a pipe: the server outlives this process
    with log.open("wb") as err:
        child = subprocess.Popen(
            [sys.executable, "-m", "bulwark.lab.ntp", "--pidfile", str(pidfile)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,  # it outlives this process: detached VMs keep their clock
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if child.poll() is not None:
            if running(pidfile):  # another lab process started one at the same moment
                return None
            return log.read_text(errors="replace").strip() or "it exited"
        if running(pidfile) == child.pid:
            return None
        time.sleep(0.05)
    return "it did not start within 10 s"


def stop(pidfile: Path) -> None:
    pid = running(pidfile)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    pidfile.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pidfile", type=Path, required=True)
    parser.add_argument("--port", type=int, default=PORT)
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", args.port))
    except OSError as exc:
        raise SystemExit(f"cannot serve NTP on 127.0.0.1:{args.port}: {exc.strerror}") from None
    args.pidfile.write_text(f"{os.getpid()}\n")
    try:
        serve(sock)
    finally:
        with contextlib.suppress(OSError):
            if args.pidfile.read_text().strip() == str(os.getpid()):
                args.pidfile.unlink()


if __name__ == "__main__":
    main()
