"""Harden's progress, summary and file diffs, read from real pyinfra 3 output (captured from a
lab VM's run in which one drifted setting, login.defs UMASK, was put back)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bulwark.hosts.harden import (
    FileDiffs,
    HardenRun,
    Tracker,
    _follow,
    outcomes,
    redact,
    timings,
)
from tests.schemas import check

DATA = Path(__file__).parent / "data"


def lines(name: str) -> list[str]:
    return (DATA / name).read_text().splitlines()


def payload(name: str) -> dict[str, object]:
    data = json.loads((DATA / name).read_text())
    assert isinstance(data, dict)
    return data


def test_the_tracker_follows_phases_operations_and_results() -> None:
    tracker = Tracker(["dev17"])
    phases: list[str] = []
    areas: list[str] = []
    for line in lines("pyinfra-apply.stderr"):
        tracker.feed(line)
        if not phases or phases[-1] != tracker.phase:
            phases.append(tracker.phase)
        if tracker.area and (not areas or areas[-1] != tracker.area):
            areas.append(tracker.area)
    assert phases == ["starting", "loading the inventory", "connecting",
                      "reading facts and planning", "applying"]  # fmt: skip
    assert areas == ["preflight", "Packages", "Firewall", "SSH", "fail2ban", "Security updates",
                     "Kernel and file system"]  # fmt: skip
    assert tracker.done == {"dev17": 19}
    assert tracker.changed == {"dev17": 1}
    assert tracker.errors == {}
    assert tracker.operation == "login.defs UMASK 027"


def test_lines_of_other_hosts_and_noise_move_nothing() -> None:
    tracker = Tracker(["web1"])
    for line in ["    [db1] Success", "random text", "", "    [web1] Connected"]:
        assert not tracker.feed(line)
    assert tracker.done == {}


def test_the_applied_run_is_summarised_per_host_and_area() -> None:
    (host,) = outcomes(payload("pyinfra-apply.json"), ["dev17"], dry=False)
    assert [(c.area, c.operation) for c in host.changed] == [
        ("Kernel and file system", "login.defs UMASK 027")
    ]
    assert host.unchanged == 18
    assert host.failed == []
    assert host.guard == "not needed"  # sshd untouched: nothing for a fresh login to confirm


def test_the_preview_promises_only_definite_changes() -> None:
    (host,) = outcomes(payload("pyinfra-preview.json"), ["dev17"], dry=True)
    # The lockout guard's fresh login is a callback pyinfra calls a conditional change on every
    # run; it is not listed as a change the run will make.
    assert [c.operation for c in host.changed] == ["login.defs UMASK 027"]
    assert host.unchanged == 18


def test_diff_lines_are_collected_per_file() -> None:
    files = FileDiffs()
    for line in lines("pyinfra-apply.stderr"):
        files.feed(line)
    (diff,) = files.by_host["dev17"]
    assert (diff.path, diff.action) == ("/etc/login.defs", "replace lines in")
    assert diff.diff == ["@@ -1 +1 @@", "- UMASK 022", "+ UMASK\t\t027"]


def test_the_json_summary_matches_the_harden_schema(tmp_path: Path) -> None:
    hosts = outcomes(payload("pyinfra-apply.json"), ["dev17"], dry=False)
    files = FileDiffs()
    for line in lines("pyinfra-apply.stderr"):
        files.feed(line)
    hosts[0].files = files.by_host["dev17"]
    run = HardenRun(False, hosts, 12.3, tmp_path / "harden.log")
    data = check("harden", run.as_dict())
    assert data["changed"] == 1
    assert data["hosts"][0]["changed_per_area"] == {"Kernel and file system": 1}


@pytest.mark.parametrize(
    "line",
    [
        '      + "app" "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"',
        "      + -----BEGIN OPENSSH PRIVATE KEY-----",
        "      - token = ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    ],
)
def test_a_secret_in_a_diff_never_reaches_the_log_or_the_screen(line: str) -> None:
    shown = redact(line)
    assert shown.endswith("(a secret: not shown)")
    assert shown.startswith("      ")
    assert line.strip()[0] in shown


@pytest.mark.parametrize("line", ["      + UMASK\t\t027", "    [web1] Success", "--> Results:"])
def test_ordinary_lines_are_kept_as_they_are(line: str) -> None:
    assert redact(line) == line


def test_the_log_stamps_each_line_and_says_where_the_time_went(tmp_path: Path) -> None:
    # A stand-in for pyinfra that prints its phases and two operations, the first taking 0.4 s.
    script = (
        "import sys, time\n"
        "say = lambda s: print(s, file=sys.stderr, flush=True)\n"
        "say('--> Connecting to hosts...'); say('    [web1] Connected')\n"
        "say('--> Beginning operation run...')\n"
        "say('--> Starting operation: bulwark harden | Packages | Install what hardening needs ')\n"
        "time.sleep(0.4); say('    [web1] Success')\n"
        "say('--> Starting operation: bulwark harden | Firewall | UFW filters IPv6 as well ')\n"
        "say('    [web1] No changes'); say('--> Results:')\n"
        "print('{}')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen: list[str] = []
    log = tmp_path / "harden.log"
    with log.open("w") as sink:
        assert _follow(proc, sink, seen.append, time.monotonic()).strip() == "{}"
    assert proc.wait() == 0
    assert seen[1] == "    [web1] Connected"  # the progress gets pyinfra's lines unstamped
    stamps = [float(line.split(" | ")[0]) for line in log.read_text().splitlines()]
    assert len(stamps) == len(seen)
    assert stamps == sorted(stamps)
    steps = dict(timings(log.read_text()))
    assert list(steps) == [
        "Connecting to hosts",
        "Beginning operation run",
        "bulwark harden | Packages | Install what hardening needs",
        "bulwark harden | Firewall | UFW filters IPv6 as well",
    ]
    assert steps["bulwark harden | Packages | Install what hardening needs"] >= 0.4


def test_timings_skip_lines_without_a_stamp() -> None:
    assert timings("$ python -m pyinfra inv.py deploy\n{}\n") == []
