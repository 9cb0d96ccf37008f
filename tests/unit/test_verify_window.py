"""The probe window's host side (bulwark/verify/window_host.py), on recorded kernel and fail2ban
data: what it reads of UFW's rate limit, how long it waits, which address it lets fail2ban
ignore. The lab test (tests/lab/test_lab_cli.py) runs it on a real host."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from bulwark.verify import window_host as host
from bulwark.verify.window import OPEN_WINDOW, opened_for

HZ = 250
# /proc/net/xt_recent/DEFAULT on a hardened lab VM, as read there (jiffies, CONFIG_HZ=250).
TABLE = (
    "src=10.0.2.2 ttl: 64 last_seen: 4295141056 oldest_pkt: 3 4295137984, 4295141056, "
    "4295141056, 4295119130\n"
    "src=2001:0db8:0000:0000:0000:0000:0000:0007 ttl: 64 last_seen: 50 oldest_pkt: 1 50\n"
)


def test_the_kernels_table_is_read_for_the_controller_only() -> None:
    assert host.xt_recent_stamps(TABLE, "10.0.2.2") == [
        4295137984, 4295141056, 4295141056, 4295119130,
    ]  # fmt: skip
    assert host.xt_recent_stamps(TABLE, "2001:db8::7") == [50]
    assert host.xt_recent_stamps(TABLE, "10.0.2.3") == []
    with pytest.raises(ValueError, match="unreadable xt_recent entry"):
        host.xt_recent_stamps("src=10.0.2.2 ttl: 64 last_seen: x", "10.0.2.2")


@pytest.mark.parametrize(
    ("ages", "needed", "wait"),
    [
        ([], 3, 0.0),  # nothing recent: the probes fit
        ([1, 2], 3, 0.0),  # 2 + 3 = 5: still fits
        ([1, 2, 3], 3, 28.0),  # one too many: wait for the oldest to leave the 30 s window
        ([5, 10, 20, 25], 3, 11.0),  # two too many: the second oldest (20 s) must leave too
        ([31, 40, 100], 3, 0.0),  # all older than the window
        ([0, 0, 0, 0, 0], 1, 31.0),  # a full window: all must leave
    ],
)
def test_the_probes_wait_until_they_fit_under_the_limit(
    ages: list[int], needed: int, wait: float
) -> None:
    now = 10_000_000
    stamps = [now - age * HZ for age in ages]
    assert host.room_wait(stamps, now, HZ, needed) == pytest.approx(wait)


def test_more_connections_than_the_limit_never_fit() -> None:
    with pytest.raises(ValueError, match="never fit"):
        host.room_wait([], 0, HZ, 6)


def test_an_address_the_configuration_ignores_is_left_alone() -> None:
    entries: list[object] = ["127.0.0.1/8", "::1", "10.0.2.0/24", "not-an-address"]
    assert host.covered("10.0.2.2", entries) == "10.0.2.0/24"
    assert host.covered("198.51.100.7", entries) is None
    assert host.unit_for("2001:db8::7") == "bulwark-verify-f2b-2001-db8--7"


def test_the_controller_is_found_above_sudo_which_drops_ssh_client() -> None:
    # A shell with SSH_CLIENT, then a child without it (as sudo runs us): the walk up finds it.
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from bulwark.verify.window_host import controller; print(controller())"
    )
    root = os.path.dirname(os.path.dirname(host.__file__)).rsplit("/bulwark", 1)[0]
    done = subprocess.run(
        ["sh", "-c", f'env -u SSH_CLIENT {sys.executable} -c "$0" "$1"', probe, root],
        env={**os.environ, "SSH_CLIENT": "198.51.100.7 50123 22"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "198.51.100.7"


def test_the_host_side_runs_on_the_oldest_python_it_meets() -> None:
    ast.parse(OPEN_WINDOW, feature_version=(3, 9))  # Debian 11's python3
    assert "import bulwark" not in OPEN_WINDOW  # it runs on the host, with the stdlib only


def test_the_window_line_is_read_back() -> None:
    out = "room: free\nwindow: 10.0.2.2 ignored by the sshd jail for 300 s\n"
    assert opened_for(out) == "10.0.2.2"
    assert opened_for("room: free\nwindow: not needed: fail2ban is not running") is None
