"""Per-host progress for the host commands: a live view on a terminal, redrawn four times a
second (so the clock runs between events), and plain time-stamped lines otherwise, for CI logs.

One row per host: what it is doing now, how many of its steps (or controls) are done of how
many, how many failed, and for how long it has been at it. harden has its own view, driven by
pyinfra's output (`hosts._run_with_progress`); bootstrap, verify, lab image builds and the demo
use this one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from bulwark.cli.output import err, printable, real, stamp


@dataclass
class Row:
    """One host's progress."""

    started: float = field(default_factory=time.monotonic)
    done: int = 0
    total: int | None = None
    failed: int = 0
    now: str = "starting"
    stepping: bool = False  # a step has started and is not done yet
    finished: float | None = None


class Board:
    """What each host is doing; `plain` boards print a line per step instead of a view."""

    def __init__(self, what: str, hosts: list[str], unit: str, *, plain: bool) -> None:
        self.what = what
        self.unit = unit
        self.plain = plain
        self.started = time.monotonic()
        self.rows = {host: Row() for host in hosts}

    def row(self, host: str) -> Row:
        return self.rows.setdefault(host, Row())

    def total(self, host: str, count: int) -> None:
        self.row(host).total = count
        self._line(host, f"{count} {self.unit} to do")

    def step(self, host: str, label: str) -> None:
        """`host` starts `label`; the step before it is done."""
        row = self.row(host)
        row.done += row.stepping
        row.stepping = True
        row.now = label
        self._line(host, label)

    def note(self, host: str, label: str, *, log: bool = True) -> None:
        """What `host` is doing now, counted as no step; `log=False` shows it only live."""
        self.row(host).now = label
        if log:
            self._line(host, label)

    def detail(self, message: str) -> None:
        """A detail of the first (or only) host's current step, logged as a line."""
        self.note(next(iter(self.rows)), message)

    def tick(self, host: str, label: str, *, failed: bool = False) -> None:
        """One more of `host`'s units done (`label`, e.g. a control); a failure is said."""
        row = self.row(host)
        row.done += 1
        row.failed += failed
        row.now = label
        if failed:
            self._line(host, f"{label} failed")
        if row.total is not None and row.done == row.total:
            self.finish(host)

    def finish(self, host: str) -> None:
        row = self.row(host)
        if row.finished is not None:
            return
        row.finished = time.monotonic()
        row.done += row.stepping
        row.stepping = False
        row.now = "done"
        self._line(host, f"done: {self._counts(row)}")

    def say(self, message: str) -> None:
        """A step of the first (or only) host: what a `progress` callback receives."""
        self.step(next(iter(self.rows)), message)

    def _counts(self, row: Row) -> str:
        of = f" of {row.total}" if row.total is not None else ""
        failed = f", {row.failed} failed" if row.failed else ""
        return f"{row.done}{of} {self.unit} done{failed}"

    def _line(self, host: str, text: str) -> None:
        if self.plain:
            sys.stderr.write(f"{stamp()} {self.what} {printable(host)}: {printable(text)}\n")
            sys.stderr.flush()

    def view(self) -> str:
        now = time.monotonic()
        lines = [f"{self.what} · {now - self.started:4.0f} s"]
        for host, row in self.rows.items():
            seconds = (row.finished or now) - row.started
            lines.append(
                f"  {printable(host)}: {self._counts(row)} · {seconds:.0f} s · {printable(row.now)}"
            )
        return "\n".join(lines)


@contextmanager
def board(what: str, hosts: list[str], unit: str = "steps") -> Iterator[Board]:
    """A Board shown live on a terminal (gone when the block ends: the summary follows), or
    as time-stamped lines on stderr otherwise."""
    if not err.is_terminal:
        yield Board(what, hosts, unit, plain=True)
        return
    from rich.live import Live  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    shown = Board(what, hosts, unit, plain=False)

    class Ticking:
        """Re-read on every refresh, so the elapsed times run between events."""

        def __rich__(self) -> Text:
            return Text(shown.view())

    with Live(Ticking(), console=real(err), refresh_per_second=4, transient=True):
        yield shown
