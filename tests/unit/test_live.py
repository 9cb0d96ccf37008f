"""The per-host progress of bootstrap, verify, lab up and the demo: what the live view shows, the
plain lines a log gets, and verify's events relayed from the suite while it runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bulwark.cli import live
from bulwark.cli.live import Board
from bulwark.verify.run import _follow
from tests.lines import PROGRESS


def plain(capsys: pytest.CaptureFixture[str]) -> list[str]:
    err = capsys.readouterr().err.splitlines()
    assert all(PROGRESS.match(line) for line in err), err
    return [line[9:] for line in err]  # without the time stamp


def test_steps_count_as_they_end_and_the_log_gets_one_line_each(
    capsys: pytest.CaptureFixture[str],
) -> None:
    shown = Board("bootstrap", ["web-1"], "steps", plain=True)
    shown.total("web-1", 3)
    for step in ("connecting", "user deploy", "proving access"):
        shown.say(step)
    assert shown.rows["web-1"].done == 2, "the step under way is not done yet"
    shown.finish("web-1")
    shown.finish("web-1")  # once only
    assert plain(capsys) == [
        "bootstrap web-1: 3 steps to do",
        "bootstrap web-1: connecting",
        "bootstrap web-1: user deploy",
        "bootstrap web-1: proving access",
        "bootstrap web-1: done: 3 of 3 steps done",
    ]


def test_controls_tick_per_host_failures_are_said_and_a_full_count_ends_the_host(
    capsys: pytest.CaptureFixture[str],
) -> None:
    shown = Board("verify", ["web-1", "db-1"], "controls", plain=True)
    shown.total("web-1", 2)
    shown.note("db-1", "connecting", log=False)
    shown.tick("web-1", "ssh-ciphers")
    shown.tick("web-1", "ufw-active", failed=True)
    assert plain(capsys) == [
        "verify web-1: 2 controls to do",
        "verify web-1: ufw-active failed",
        "verify web-1: done: 2 of 2 controls done, 1 failed",
    ]
    view = shown.view().splitlines()
    assert view[0].startswith("verify · ")
    assert view[1].startswith("  web-1: 2 of 2 controls done, 1 failed · ")
    assert view[1].endswith(" · done")
    assert view[2].startswith("  db-1: 0 controls done · ")
    assert view[2].endswith(" · connecting")


def test_a_hosts_clock_stops_when_it_is_done() -> None:
    shown = Board("verify", ["web-1"], "controls", plain=False)
    shown.total("web-1", 1)
    shown.tick("web-1", "ssh-ciphers")
    first = shown.view()
    time.sleep(1.1)
    assert shown.view().splitlines()[1] == first.splitlines()[1]


@pytest.mark.parametrize(
    ("host", "label"),
    [("evil\nhost", "step"), ("web-1", "a\x1b[2Jb"), ("web-1", "two\r\nlines"), ("[red]x", "[/]")],
)
def test_user_text_in_progress_stays_one_inert_line(
    host: str, label: str, capsys: pytest.CaptureFixture[str]
) -> None:
    shown = Board("verify", [host], "controls", plain=True)
    shown.step(host, label)
    (line,) = plain(capsys)
    assert "\x1b" not in line
    assert "\r" not in line
    assert len(shown.view().splitlines()) == 2


def test_on_a_terminal_the_board_is_a_live_view(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    monkeypatch.setattr(live, "err", console)
    with live.board("verify", ["web-1"], "controls") as shown:
        assert not shown.plain
        shown.total("web-1", 2)
        shown.tick("web-1", "ssh-ciphers")
        time.sleep(0.6)  # a few refreshes
    assert "web-1: 1 of 2 controls done" in screen.getvalue()


def test_verify_relays_the_suites_events_while_it_runs(tmp_path: Path) -> None:
    # A real child process appends events the way the suite's plugin does, a line in two
    # writes among them; each arrives whole, in order, before the child has ended.
    events = tmp_path / "events.jsonl"
    script = f"""
import json, time
with open({str(events)!r}, "a") as f:
    for n in range(3):
        f.write(json.dumps({{"host": "web-1", "control": f"c{{n}}", "status": "pass"}}))
        f.flush()
        time.sleep(0.3)
        f.write("\\n")
        f.flush()
    time.sleep(1.0)
"""
    proc = subprocess.Popen([sys.executable, "-c", script])
    seen: list[tuple[dict[str, object], bool]] = []
    code = _follow(proc, events, lambda event: seen.append((event, proc.poll() is None)))
    assert code == 0
    assert [event["control"] for event, _ in seen] == ["c0", "c1", "c2"]
    assert all(running for _, running in seen), "events came only after the suite ended"
    assert json.loads(events.read_text().splitlines()[0])["host"] == "web-1"
