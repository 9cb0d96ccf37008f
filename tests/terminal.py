"""A real terminal for tests: a command in a detached tmux session on its own server, read
back as the screen a person would see (what rich decides to draw on a TTY, prompts included)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
import uuid
from types import TracebackType

EXIT_MARK = "BULWARK-TEST-EXIT="


class Terminal:
    def __init__(self, width: int = 160, height: int = 50) -> None:
        tmux = shutil.which("tmux")
        assert tmux, "tmux is not installed: .ci/run installs it (apt-get install tmux)"
        self.tmux = tmux
        self.server = f"bulwark-test-{uuid.uuid4().hex[:8]}"
        self.size = (str(width), str(height))

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            [self.tmux, "-L", self.server, *args],
            capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        return done.stdout

    def start(self, argv: list[str]) -> None:
        """Run `argv` on the terminal; its exit code is printed after it, then the pane stays."""
        line = f"{shlex.join(argv)}; echo {EXIT_MARK}$?; sleep 3600"
        width, height = self.size
        self._tmux("new-session", "-d", "-s", "t", "-x", width, "-y", height, line)

    def screen(self) -> str:
        """The whole pane, scroll-back included, without trailing blank lines."""
        return self._tmux("capture-pane", "-p", "-J", "-t", "t", "-S", "-2000").rstrip()

    def wait_for(self, text: str, timeout: float = 900) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            if EXIT_MARK in screen and EXIT_MARK not in text:
                raise AssertionError(f"the command ended before showing {text!r}:\n{screen}")
            time.sleep(0.5)
        raise AssertionError(f"{text!r} did not appear in {timeout:.0f} s:\n{self.screen()}")

    def exit_code(self, timeout: float = 900) -> int:
        screen = self.wait_for(EXIT_MARK, timeout)
        return int(screen.split(EXIT_MARK, 1)[1].split()[0])

    def keys(self, keys: str) -> None:
        self._tmux("send-keys", "-t", "t", keys, "Enter")

    def __enter__(self) -> Terminal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        subprocess.run([self.tmux, "-L", self.server, "kill-server"], check=False,
                       capture_output=True)  # fmt: skip
