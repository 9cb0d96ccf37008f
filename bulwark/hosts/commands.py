"""Shell commands that both harden (as pyinfra facts) and verify (in its snapshot) run, so the
two read a host the same way. Plain strings: importing this loads nothing."""

from __future__ import annotations

COMPILERS = ("as", "cc", "gcc", "g++", "clang")
# Each compiler on root's PATH, as its real file (the alternatives' target) and that file's mode.
COMPILER_MODES = (
    f'for c in {" ".join(COMPILERS)}; do p=$(command -v "$c") && '
    'stat -c "%a %n" "$(readlink -f "$p")"; done; true'
)
