"""pyinfra facts that bulwark's deploys need and pyinfra lacks: a command and a pure parser each."""

from __future__ import annotations

import re
from typing import Any

from pyinfra.api import FactBase

OPENSSH_RE = re.compile(r"OpenSSH_(\d+)\.(\d+)")


class OpensshVersion(FactBase[tuple[int, int] | None]):
    """The (major, minor) version of the installed OpenSSH, e.g. (9, 2) on Debian 12."""

    def command(self) -> str:
        return "ssh -V 2>&1 || true"

    def process(self, output: list[str]) -> tuple[int, int] | None:
        match = OPENSSH_RE.search("\n".join(output))
        return (int(match.group(1)), int(match.group(2))) if match else None


class SshHostKeys(FactBase[dict[str, int]]):
    """Host key types present in /etc/ssh and their sizes in bits: {"ED25519": 256, "RSA": 3072}."""

    def command(self) -> str:
        return (
            "for f in /etc/ssh/ssh_host_*_key.pub; do "
            '[ -e "$f" ] && ssh-keygen -l -f "$f"; done; true'
        )

    @staticmethod
    def default() -> dict[str, int]:
        return {}

    def process(self, output: list[str]) -> dict[str, int]:
        keys = {}
        for line in output:
            match = re.match(r"^(\d+) \S+ .*\((\w+)\)$", line.strip())
            if match:
                keys[match.group(2)] = int(match.group(1))
        return keys


class WeakModuli(FactBase[int]):
    """How many Diffie-Hellman group-exchange moduli in /etc/ssh/moduli are under 3072 bits."""

    def command(self) -> str:
        # Field 5 is the size minus one: 3071 means a 3072-bit modulus.
        return "awk '$1 !~ /^#/ && $5 < 3071' /etc/ssh/moduli 2>/dev/null | wc -l"

    @staticmethod
    def default() -> int:
        return 0

    def process(self, output: list[str]) -> int:
        return int(output[0].strip()) if output else 0


class SshdDropinDirectives(FactBase[list[tuple[str, int, str]]]):
    """Active directives in sshd drop-ins other than bulwark's: [(file, line number, text)]."""

    def command(self, exclude: str) -> str:
        return (
            "for f in /etc/ssh/sshd_config.d/*.conf; do "
            f'[ -e "$f" ] && [ "$f" != {exclude} ] && '
            "grep -HnvE '^[[:space:]]*(#|$)' \"$f\"; done; true"
        )

    @staticmethod
    def default() -> list[tuple[str, int, str]]:
        return []

    def process(self, output: list[str]) -> list[tuple[str, int, str]]:
        found = []
        for line in output:
            path, number, text = line.split(":", 2)
            found.append((path, int(number), text.strip()))
        return found


class SshSocketActivated(FactBase[bool]):
    """Whether sshd is started by ssh.socket (Ubuntu >= 22.10): Port changes need the socket."""

    def command(self) -> str:
        return "systemctl is-enabled ssh.socket 2>/dev/null || true"

    @staticmethod
    def default() -> bool:
        return False

    def process(self, output: list[str]) -> bool:
        return bool(output) and output[0].strip() in ("enabled", "enabled-runtime")


class UfwStatus(FactBase[dict[str, Any]]):
    """`ufw status verbose` parsed, plus the rules as `ufw show added` lists them."""

    def requires_command(self) -> str:
        return "ufw"

    def command(self) -> str:
        return "ufw status verbose; echo '--added--'; ufw show added"

    @staticmethod
    def default() -> dict[str, Any]:
        return {"active": False, "incoming": None, "outgoing": None, "logging": None, "rules": []}

    def process(self, output: list[str]) -> dict[str, Any]:
        state = self.default()
        added = False
        for raw in output:
            line = raw.strip()
            if line == "--added--":
                added = True
            elif added and line.startswith("ufw "):
                state["rules"].append(line.removeprefix("ufw "))
            elif line.startswith("Status:"):
                state["active"] = line.split(":", 1)[1].strip() == "active"
            elif line.startswith("Default:"):
                match = re.search(r"(\w+) \(incoming\), (\w+) \(outgoing\)", line)
                if match:
                    state["incoming"], state["outgoing"] = match.groups()
            elif line.startswith("Logging:"):
                match = re.search(r"\((\w+)\)", line)
                state["logging"] = match.group(1) if match else "off"
        return state


class Fail2banJails(FactBase[list[str] | None]):
    """Jails fail2ban has loaded, or None when fail2ban is not running."""

    def requires_command(self) -> str:
        return "fail2ban-client"

    def command(self) -> str:
        return "fail2ban-client status 2>/dev/null || echo 'not running'"

    def process(self, output: list[str]) -> list[str] | None:
        for line in output:
            if "Jail list:" in line:
                names = line.split(":", 1)[1]
                return [n.strip() for n in names.split(",") if n.strip()]
        return None


class CommandExists(FactBase[bool]):
    """Whether a command is on root's PATH."""

    def command(self, program: str) -> str:
        return f"command -v {program} >/dev/null && echo yes || echo no"

    def process(self, output: list[str]) -> bool:
        return bool(output) and output[0].strip() == "yes"
