"""`python -m bulwark` and the `bulwark` console script.

Ctrl-C at any moment is one `interrupted` line and exit 130, never a traceback and never lost:
- the signal handler is bulwark's own from the first line, so asyncio (which Pulumi's mock run
  uses) does not swap in its handler that turns Ctrl-C into a task cancellation the program
  may swallow;
- a KeyboardInterrupt that lands where it cannot propagate (native code such as pydantic-core's
  validator builds, or an import lock's weakref callback) is not printed as "Exception
  ignored" and lost, but delivered again to the main thread, where Python code handles it;
- this module imports nothing heavy, so even Ctrl-C while the CLI loads is handled here.
Only Python's own start-up, the first few milliseconds before any of bulwark runs, is beyond
reach.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C module: `signal` imports enum first
import _thread
import sys
import time
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _deliver_again() -> None:
    # From another thread and a moment later, so that it lands in ordinary Python code rather
    # than in the hook (or the callback) that could not raise it the first time.
    time.sleep(0.01)
    _thread.interrupt_main()


def _unraisable(info: sys.UnraisableHookArgs, default: object = sys.unraisablehook) -> None:
    if isinstance(info.exc_value, KeyboardInterrupt):
        _thread.start_new_thread(_deliver_again, ())
        return
    default(info)  # type: ignore[operator]


def main() -> None:
    _signal.signal(_signal.SIGINT, _interrupt)
    sys.unraisablehook = _unraisable
    try:
        from bulwark.cli import run  # noqa: PLC0415 - inside the guard on purpose

        code = run()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
