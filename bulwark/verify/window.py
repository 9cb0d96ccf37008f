"""verify never gets its own controller banned.

The outside probes must fail logins to prove anything (root is refused, a user that does not
exist is refused), and fail2ban's sshd filter counts two such lines per run ("User root ... not
allowed", "Invalid user"). With the default maxretry of 5, the third verify within findtime
banned the controller, and the next verify or harden could not connect.

So before the probes, verify opens a window over its authenticated control connection
(bulwark/verify/window_host.py, run on the host): the controller's address (as the host sees
it) joins the sshd jail's ignoreip at run time, and a transient systemd timer on the host takes
it out again WINDOW_SECONDS later, long after fail2ban has read the probes' lines (a verify
run that dies half-way still has it taken out).
A later verify from the same address re-arms the timer. Nothing is written to the jail's
configuration, nobody else's failures are touched, and an address the configuration already
ignores is left alone. A brute-forcer from any other address is banned as before; one behind
the very same address goes unbanned for the window, which docs/verify.md states.

UFW's rate limit (`ufw limit`, on by default) is the other way verify could shut its operator
out: it refuses a source's 6th new SSH connection within 30 s, a verify opens four, and a
refused try counts against the limit too. So the host side also waits, before the probes,
until their connections fit under the limit (it reads the kernel's own count), and two
verifies in a row are paced rather than refused.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

WINDOW_SECONDS = 300
# The new SSH connections the outside probes open at once (root, the deploy user, a user that
# does not exist: sshd refuses a change of user within one connection).
PROBE_CONNECTIONS = 3
# Sent to the host and run there as root with `python3 -c` (python3 is there: fail2ban is
# written in it).
OPEN_WINDOW = Path(__file__).with_name("window_host.py").read_text(encoding="utf-8")

_OPENED = re.compile(r"^window: (\S+) ignored by the sshd jail for (\d+) s$")


def opened_for(line: str) -> str | None:
    """The controller address a window was opened for, from OPEN_WINDOW's output; None if no
    window was opened (not needed, or could not be)."""
    for text in line.splitlines():
        match = _OPENED.match(text.strip())
        if match is not None:
            return str(ipaddress.ip_address(match[1]))
    return None
