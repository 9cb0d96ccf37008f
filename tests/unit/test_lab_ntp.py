"""The lab's time server answers SNTP the way systemd-timesyncd expects, with this clock."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from bulwark.lab import ntp


def request(transmit: float) -> bytes:
    """A client request as systemd-timesyncd sends it: version 4, mode 3, its transmit time."""
    return bytes([(4 << 3) | 3]) + bytes(39) + ntp.stamp(transmit)


def decode(t: bytes) -> float:
    seconds, fraction = struct.unpack("!II", t)
    return float(seconds - ntp.NTP_EPOCH + fraction / 2**32)


def test_a_reply_echoes_the_request_and_carries_this_clock() -> None:
    now = time.time()
    reply = ntp.answer(request(now - 0.5), received=now, now=now + 0.001)
    assert reply is not None
    assert len(reply) == 48
    first, stratum = reply[0], reply[1]
    assert (first >> 6, (first >> 3) & 7, first & 7) == (0, 4, 4)  # in sync, v4, server
    assert 1 <= stratum <= 15  # timesyncd refuses 0 (kiss of death) and 16 (unsynchronised)
    assert reply[24:32] == ntp.stamp(now - 0.5)  # origin: the client's own transmit time
    assert abs(decode(reply[32:40]) - now) < 1e-6
    assert abs(decode(reply[40:48]) - (now + 0.001)) < 1e-6


def test_only_client_requests_are_answered() -> None:
    server_mode = bytes([(4 << 3) | 4]) + bytes(47)
    assert ntp.answer(server_mode, 0.0, 0.0) is None
    assert ntp.answer(b"short", 0.0, 0.0) is None


def test_the_server_answers_over_udp(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # a free port (123 needs root)
    pidfile = tmp_path / "ntp.pid"
    server = subprocess.Popen(
        [sys.executable, "-m", "bulwark.lab.ntp", "--pidfile", str(pidfile), "--port", str(port)]
    )
    try:
        deadline = time.monotonic() + 10
        while ntp.running(pidfile) != server.pid:
            assert server.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(5)
            sent = time.time()
            client.sendto(request(sent), ("127.0.0.1", port))
            reply, _ = client.recvfrom(512)
        assert abs(decode(reply[40:48]) - sent) < 1.0
        ntp.stop(pidfile)
        assert server.wait(timeout=10) != 0  # ended by the signal
        assert not pidfile.exists()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
