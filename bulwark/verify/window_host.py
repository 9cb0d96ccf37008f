"""The host side of verify's probe window (bulwark/verify/window.py says why).

This file is sent to the host and run there as root with `python3 -c` before the outside
probes: standard library only, Python 3.9 and later (Debian 11 onwards). Arguments: `window`,
the window's seconds and the number of connections the probes open at once (it prints a
`room:` line and a `window:` line); or `room` and a number of connections (the `room:` line).
Its pure parts (`xt_recent_stamps`, `room_wait`, `covered`) are unit tested on the
controller.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
import time

UNIT_PREFIX = "bulwark-verify-f2b-"
XT_RECENT = "/proc/net/xt_recent/DEFAULT"  # the table UFW's `limit` rules use
# UFW's `limit`: a source's 6th new connection within 30 s is refused (and counts twice).
LIMIT_HITS, LIMIT_SECONDS = 5, 30


def unit_for(client: str) -> str:
    """The transient timer that takes `client` out of the sshd jail's ignoreip again."""
    return UNIT_PREFIX + client.replace(":", "-").replace(".", "-")


def controller() -> str | None:
    """This session's client address: sudo drops SSH_CLIENT, so it is read from the nearest
    ancestor that has it (the login shell sshd started for the connection)."""
    pid = os.getpid()
    while pid > 1:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
            if b"SSH_CLIENT" in env:
                return env[b"SSH_CLIENT"].split()[0].decode()
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
    return None


def xt_recent_stamps(table: str, client: str) -> list[int]:
    """The jiffies at which `client` opened new connections, from an xt_recent table's text
    (`src=ADDR ttl: T last_seen: J oldest_pkt: N J1, J2, ...`); [] if it has none."""
    address = ipaddress.ip_address(client)
    for entry in table.splitlines():
        source, _, rest = entry.partition(" ")
        if not source.startswith("src="):
            continue
        try:
            if ipaddress.ip_address(source[len("src=") :]) != address:
                continue
            stamps = rest.split("oldest_pkt: ", 1)[1].split(None, 1)[1]
            return [int(s) for s in stamps.split(",")]
        except (ValueError, IndexError):
            raise ValueError(f"unreadable xt_recent entry: {entry[:80]!r}") from None
    return []


def room_wait(
    stamps: list[int],
    now: int,
    hz: int,
    needed: int,
    hits: int = LIMIT_HITS,
    seconds: int = LIMIT_SECONDS,
) -> float:
    """Seconds to wait until `needed` more new connections fit under the limit (0.0: now)."""
    recent = sorted(s for s in stamps if s > now - seconds * hz)
    excess = len(recent) + needed - hits
    if excess <= 0:
        return 0.0
    if needed > hits:
        raise ValueError(f"{needed} connections never fit a limit of {hits}")
    # Once the excess-th oldest stamp leaves the window, the rest fit; a second to spare.
    return (recent[excess - 1] + seconds * hz - now) / hz + 1.0


def covered(client: str, entries: list[object]) -> str | None:
    """The ignoreip entry that already covers `client`, if any."""
    address = ipaddress.ip_address(client)
    for entry in entries:
        try:
            if address in ipaddress.ip_network(str(entry), strict=False):
                return str(entry)
        except ValueError:
            continue
    return None


def _jiffies() -> int:
    with open("/proc/timer_list") as f:
        for line in f:
            if line.startswith("jiffies: "):
                return int(line.split()[1])
    raise OSError("no jiffies in /proc/timer_list")


def _hz() -> int:
    try:
        with open("/boot/config-" + os.uname().release) as f:
            found = re.search(r"^CONFIG_HZ=(\d+)$", f.read(), re.M)
        if found:
            return int(found.group(1))
    except OSError:
        pass
    first, start = _jiffies(), time.monotonic()
    time.sleep(0.25)
    rate = (_jiffies() - first) / (time.monotonic() - start)
    return min((100, 250, 300, 1000), key=lambda h: abs(h - rate))


def make_room(client: str, needed: int) -> str:
    """Wait until the probes' connections fit under UFW's rate limit, so none is refused: a
    refused try counts against the limit too (and behind NAT, such as a lab VM's, the refused
    SYN is sent again and again), so a refusal would keep the limit on."""
    try:
        with open(XT_RECENT) as f:
            table = f.read()
        now, hz = _jiffies(), _hz()
        wait = room_wait(xt_recent_stamps(table, client), now, hz, needed)
    except OSError:
        return "no rate limit"
    except ValueError as exc:
        return f"rate limit not read ({exc})"
    if wait <= 0:
        return "free"
    time.sleep(wait)
    return f"waited {wait:.0f} s for the rate limit's window"


def _ask(*command: str) -> tuple[int, list[object]]:
    # The host's own fail2ban (this file runs there), one socket round trip, no Python start.
    from fail2ban.client.csocket import CSocket  # type: ignore[import-not-found]  # noqa: PLC0415

    sock = CSocket("/var/run/fail2ban/fail2ban.sock")
    try:
        code, answer = sock.send(list(command))
        return int(code), list(answer) if isinstance(answer, (list, tuple)) else [answer]
    finally:
        sock.close()


def open_window(client: str, seconds: int) -> str:
    """Let the sshd jail ignore `client` for `seconds`, by a transient timer that takes it out
    again; a window already open for it is re-armed. Returns what happened."""
    try:
        code, ignored = _ask("get", "sshd", "ignoreip")
    except Exception:
        return "not needed: fail2ban is not running"
    if code != 0:
        return "not needed: fail2ban has no sshd jail"
    unit = unit_for(client)
    ours_run = subprocess.run(["systemctl", "is-active", "--quiet", unit + ".timer"], check=False)
    ours = ours_run.returncode == 0
    entry = covered(client, ignored)
    if entry is not None and not ours:
        return f"not needed: {client} is in the sshd jail's ignoreip ({entry})"
    runner, f2b = shutil.which("systemd-run"), shutil.which("fail2ban-client")
    if runner is None or f2b is None:
        return "not opened: systemd-run or fail2ban-client is missing"
    subprocess.run(["systemctl", "stop", unit + ".timer"], capture_output=True, check=False)
    subprocess.run(
        ["systemctl", "reset-failed", unit + ".timer", unit + ".service"],
        capture_output=True,
        check=False,
    )
    if not ours:
        _ask("set", "sshd", "addignoreip", client)
    subprocess.run(
        [runner, "--quiet", "--unit", unit, f"--on-active={seconds}",
         "--timer-property=AccuracySec=1s", "--", "/bin/sh", "-c",
         f2b + ' set sshd delignoreip "$0" || true', client],
        check=True,
    )  # fmt: skip
    return f"{client} ignored by the sshd jail for {seconds} s"


def main(argv: list[str]) -> None:
    """`window SECONDS NEEDED`: room for NEEDED connections, then the window; `room NEEDED`:
    the room alone (the ban probe paces its tries with it)."""
    client = controller()
    if argv[1] == "room":
        print("room: " + (make_room(client, int(argv[2])) if client else "unknown"))
        return
    seconds, needed = int(argv[2]), int(argv[3])
    if client is None:
        print("room: unknown")
        print("window: not opened: this session's client address is unknown")
        return
    print("room: " + make_room(client, needed))
    print("window: " + open_window(client, seconds))


if __name__ == "__main__":
    main(sys.argv)
