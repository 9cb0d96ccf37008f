"""pyinfra facts that bulwark's deploys need and pyinfra lacks: a command and a pure parser each."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace
from typing import Any

from pyinfra.api import FactBase

from bulwark.hosts.commands import (
    AIDE_DB,
    AIDE_INIT_UNIT,
    COMPILER_MODES,
    PROC_GROUP,
    PROC_VIEWER_GROUPS,
)

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
    """Active directives in sshd drop-ins other than bulwark's, and the Port and HostKey lines of
    sshd_config itself (those two add up instead of the first one winning, so an old `Port 22`
    there keeps listening beside the drop-in's port): [(file, line number, text)]."""

    def command(self, exclude: str) -> str:
        return (
            "for f in /etc/ssh/sshd_config.d/*.conf; do "
            f'[ -e "$f" ] && [ "$f" != {exclude} ] && '
            "grep -HnvE '^[[:space:]]*(#|$)' \"$f\"; done; "
            "grep -HniE '^[[:space:]]*(port|hostkey)[[:space:]]' /etc/ssh/sshd_config; true"
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


UFW_POLICIES = {"DROP": "deny", "REJECT": "reject", "ACCEPT": "allow"}


# fail2ban's ufw action comments every ban rule it adds with this (action.d/ufw.conf).
FAIL2BAN_COMMENT = "comment 'by Fail2Ban"


@dataclass(frozen=True)
class Ufw:
    """UFW as the host runs it; `bans` are fail2ban's rules, never converged away."""

    active: bool = False
    incoming: str | None = None
    outgoing: str | None = None
    logging: str | None = None
    rules: tuple[str, ...] = ()
    bans: tuple[str, ...] = ()


class UfwStatus(FactBase[Ufw]):
    """UFW's state from its config files and the kernel, plus the rules as `ufw show added` lists
    them. (`ufw status verbose` says the same but costs a second Python start on the host.)
    Active means enabled in ufw.conf AND its chains loaded in the kernel. fail2ban's bans are
    ufw rules too (banaction ufw, commented "by Fail2Ban ..."): they are listed apart, under
    "bans", so that converging the declared rules never lifts a ban."""

    def requires_command(self) -> str:
        return "ufw"

    def command(self) -> str:
        return (
            "grep -hE '^(ENABLED|LOGLEVEL|DEFAULT_INPUT_POLICY|DEFAULT_OUTPUT_POLICY)=' "
            "/etc/ufw/ufw.conf /etc/default/ufw; "
            "iptables -n -L ufw-user-input >/dev/null 2>&1 && echo LOADED=yes; "
            "echo '--added--'; ufw show added"
        )

    @staticmethod
    def default() -> Ufw:
        return Ufw()

    def process(self, output: list[str]) -> Ufw:
        rules: list[str] = []
        bans: list[str] = []
        settings: dict[str, str] = {}
        added = False
        for raw in output:
            line = raw.strip()
            if line == "--added--":
                added = True
            elif added and line.startswith("ufw "):
                rule = line.removeprefix("ufw ")
                (bans if FAIL2BAN_COMMENT in rule else rules).append(rule)
            elif not added and "=" in line:
                key, value = line.split("=", 1)
                settings[key] = value.strip().strip("\"'")
        return Ufw(
            active=settings.get("ENABLED") == "yes" and settings.get("LOADED") == "yes",
            incoming=UFW_POLICIES.get(settings.get("DEFAULT_INPUT_POLICY", "")),
            outgoing=UFW_POLICIES.get(settings.get("DEFAULT_OUTPUT_POLICY", "")),
            logging=settings.get("LOGLEVEL", "off"),
            rules=tuple(rules),
            bans=tuple(bans),
        )


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


class CommandsExist(FactBase[set[str]]):
    """Which of the given commands are on root's PATH, in one command."""

    def command(self, programs: list[str]) -> str:
        quoted = " ".join(shlex.quote(p) for p in programs)
        return f'for p in {quoted}; do command -v "$p" >/dev/null && echo "$p"; done; true'

    @staticmethod
    def default() -> set[str]:
        return set()

    def process(self, output: list[str]) -> set[str]:
        return {line.strip() for line in output if line.strip()}


class LoginDefs(FactBase[dict[str, str]]):
    """The keys /etc/login.defs sets (comments and blank lines left out): key -> value."""

    def command(self) -> str:
        return "grep -E '^[A-Z_]+[[:space:]]' /etc/login.defs || true"

    @staticmethod
    def default() -> dict[str, str]:
        return {}

    def process(self, output: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for line in output:
            key, *value = line.split(maxsplit=2)
            found[key] = value[0] if value else ""  # shadow reads them all: the last one wins
        return found


class AideBaseline(FactBase[str]):
    """AIDE's database: "built", "building" (bulwark's background build runs) or "none"."""

    def command(self) -> str:
        return (
            f"if [ -e {AIDE_DB} ]; then echo built; "
            f"elif systemctl is-active --quiet {AIDE_INIT_UNIT}; then echo building; "
            "else echo none; fi"
        )

    @staticmethod
    def default() -> str:
        return "none"

    def process(self, output: list[str]) -> str:
        return output[0].strip() if output else "none"


class CompilerModes(FactBase[dict[str, str]]):
    """The real file of each compiler on PATH -> its octal mode."""

    def command(self) -> str:
        return COMPILER_MODES

    @staticmethod
    def default() -> dict[str, str]:
        return {}

    def process(self, output: list[str]) -> dict[str, str]:
        return {path: mode for mode, _, path in (line.partition(" ") for line in output) if path}


# --------------------------------------------------------------------------- batched facts
# Each remote command costs a shell and a sudo on the host (about 0.3 s in an emulated guest),
# so an idempotent re-run is dominated by how many facts it reads. These read many things in one.

SECTION = "##bulwark-section "


def sectioned(parts: dict[str, str]) -> str:
    """One shell command that runs each part after a marker line naming it."""
    return "; ".join(f"echo '{SECTION}{name}'; {{ {command}; }}" for name, command in parts.items())


def split_sections(output: list[str]) -> dict[str, list[str]]:
    """The output of a `sectioned` command, by part name."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output:
        if line.startswith(SECTION):
            current = found.setdefault(line.removeprefix(SECTION).strip(), [])
        elif current is not None:
            current.append(line)
    return found


class FileStates(FactBase[dict[str, str | None]]):
    """Mode, owner, group and SHA-1 of regular files, one command for all of them:
    {path: "644:root:root:<sha1>"}, None for a path that is not a regular file."""

    # One `stat` and one `sha1sum` for all the files there, not three programs per file: on a
    # small or emulated host each program start costs tens of milliseconds.
    SUMS = "##bulwark-sums"

    def command(self, paths: list[str]) -> str:
        quoted = " ".join(shlex.quote(p) for p in paths)
        return (
            f'set --; for f in {quoted}; do if [ -f "$f" ]; then set -- "$@" "$f"; '
            "else printf '%s -\\n' \"$f\"; fi; done; "
            f"[ $# -eq 0 ] || {{ stat -c '%n %a:%U:%G' -- \"$@\"; echo {shlex.quote(self.SUMS)}; "
            'sha1sum -- "$@"; }'
        )

    @staticmethod
    def default() -> dict[str, str | None]:
        return {}

    def process(self, output: list[str]) -> dict[str, str | None]:
        states: dict[str, str | None] = {}
        modes: dict[str, str] = {}
        sums = False
        for line in output:
            if line.strip() == self.SUMS:
                sums = True
            elif sums:
                sha1, _, path = line.rstrip().partition("  ")
                if sha1.startswith("\\"):  # sha1sum escapes a name holding \ or a newline
                    sha1 = sha1[1:]
                    path = path.replace("\\\\", "\0").replace("\\n", "\n").replace("\0", "\\")
                if path in modes:
                    states[path] = f"{modes[path]}:{sha1}"
            else:
                path, _, state = line.strip().rpartition(" ")
                if state == "-":
                    states[path] = None
                else:
                    modes[path] = state
                    states[path] = None  # until its checksum is read
        return states


APT_LISTS_STAMP = "/var/lib/apt/periodic/update-success-stamp"
UPGRADED_STAMP = "/var/lib/bulwark/upgraded-stamp"


class FirstUpgrade(FactBase[str | None]):
    """When bulwark's first-run full upgrade finished (its stamp's mtime), or None if never."""

    def command(self) -> str:
        return f"stat -c %y {UPGRADED_STAMP} 2>/dev/null || true"

    def process(self, output: list[str]) -> str | None:
        text = "\n".join(output).strip()
        return text.split(".")[0] or None


@dataclass(frozen=True)
class Mount:
    """A path's /etc/fstab line and its live mount (None: not there)."""

    fstab: str | None = None
    type: str | None = None
    options: tuple[str, ...] = ()


class MountStates(FactBase[dict[str, Mount]]):
    """For each path: its /etc/fstab line and its live mount (type and options), in one
    command. A path that is in neither is absent from the answer."""

    def command(self, paths: list[str]) -> str:
        wanted = " || ".join(f'$2 == "{p}"' for p in paths)
        return sectioned(
            {
                "fstab": f"awk '$1 !~ /^#/ && ({wanted})' /etc/fstab",
                "mounts": f"awk '{wanted}' /proc/mounts",
            }
        )

    @staticmethod
    def default() -> dict[str, Mount]:
        return {}

    def process(self, output: list[str]) -> dict[str, Mount]:
        parts = split_sections(output)
        found: dict[str, Mount] = {}
        for line in parts.get("fstab", []):
            path = line.split()[1]
            found[path] = replace(found.get(path, Mount()), fstab=line.strip())
        for line in parts.get("mounts", []):
            fields = line.split()
            found[fields[1]] = replace(
                found.get(fields[1], Mount()), type=fields[2], options=tuple(fields[3].split(","))
            )
        return found


@dataclass(frozen=True)
class ProcExemption:
    """The group `proc`'s gid (None: there is none), and for each service that must see every
    process and is running, the supplementary groups it holds."""

    gid: str | None = None
    running: dict[str, tuple[str, ...]] = field(default_factory=dict)


class ProcExemptions(FactBase[ProcExemption]):
    """Who /proc's hidepid exempts: the group and what the running services hold."""

    def command(self) -> str:
        return sectioned(
            {"gid": f"getent group {PROC_GROUP} | cut -d: -f3", "running": PROC_VIEWER_GROUPS}
        )

    @staticmethod
    def default() -> ProcExemption:
        return ProcExemption()

    def process(self, output: list[str]) -> ProcExemption:
        parts = split_sections(output)
        gid = next((line.strip() for line in parts.get("gid", []) if line.strip()), None)
        running = {}
        for line in parts.get("running", []):
            if line.split():
                unit, *gids = line.split()
                running[unit] = tuple(gids)
        return ProcExemption(gid, running)


class UnitStates(FactBase[dict[str, tuple[bool, bool]]]):
    """(enabled, active) for each systemd unit, in one command."""

    # `systemctl show` prints one blank-line separated block per unit, in the order asked: one
    # systemctl for all units instead of two per unit.
    AWK = (
        'BEGIN { RS = ""; split(names, name, " ") } '
        '{ enabled = "-"; active = "-"; for (i = 1; i <= NF; i++) { split($i, kv, "="); '
        'if (kv[1] == "UnitFileState" && kv[2] != "") enabled = kv[2]; '
        'if (kv[1] == "ActiveState" && kv[2] != "") active = kv[2] } '
        "print name[NR], enabled, active }"
    )

    def command(self, units: list[str]) -> str:
        names = " ".join(units)
        quoted = " ".join(shlex.quote(u) for u in units)
        return (
            f"systemctl show -p UnitFileState -p ActiveState {quoted} 2>/dev/null | "
            f"awk -v names={shlex.quote(names)} {shlex.quote(self.AWK)}"
        )

    @staticmethod
    def default() -> dict[str, tuple[bool, bool]]:
        return {}

    def process(self, output: list[str]) -> dict[str, tuple[bool, bool]]:
        states = {}
        for line in output:
            unit, *rest = line.split()
            # Not "enabled-runtime": that lives in /run and is gone after a reboot.
            enabled = bool(rest) and rest[0] in ("enabled", "static", "alias")
            states[unit] = (enabled, bool(rest) and rest[-1] == "active")
        return states


@dataclass(frozen=True)
class Sshd:
    """What the SSH deploy compares: OpenSSH's version, bulwark's drop-in (its SHA-1), host key
    bits by type, other drop-ins' directives (path, line, text), weak moduli, socket
    activation, and an unconfirmed earlier change (its revert timer still armed)."""

    version: tuple[int, int] | None
    dropin_sha1: str | None
    hostkeys: dict[str, int]
    others: list[tuple[str, int, str]]
    weak_moduli: int
    socket: bool
    revert_pending: bool


class SshdState(FactBase[Sshd]):
    """Everything the SSH deploy compares, in one command: the OpenSSH version, the SHA-1 of
    bulwark's drop-in, host keys, other drop-ins' directives, weak moduli, socket activation."""

    def command(self, dropin: str, revert_unit: str) -> str:
        return sectioned(
            {
                "version": OpensshVersion().command(),
                "dropin": f"sha1sum < {shlex.quote(dropin)} 2>/dev/null | cut -d' ' -f1",
                "hostkeys": SshHostKeys().command(),
                "others": SshdDropinDirectives().command(exclude=dropin),
                "moduli": WeakModuli().command(),
                "socket": SshSocketActivated().command(),
                # An earlier run's change that no fresh login has confirmed yet.
                "revert": f"systemctl is-active {shlex.quote(revert_unit)}.timer 2>/dev/null "
                "|| true",
            }
        )

    def process(self, output: list[str]) -> Sshd:
        parts = split_sections(output)
        dropin = [line.strip() for line in parts.get("dropin", []) if line.strip()]
        return Sshd(
            version=OpensshVersion().process(parts.get("version", [])),
            dropin_sha1=dropin[0] if dropin else None,
            hostkeys=SshHostKeys().process(parts.get("hostkeys", [])),
            others=SshdDropinDirectives().process(parts.get("others", [])),
            weak_moduli=WeakModuli().process(parts.get("moduli", [])),
            socket=SshSocketActivated().process(parts.get("socket", [])),
            revert_pending=[line.strip() for line in parts.get("revert", [])] == ["active"],
        )


@dataclass(frozen=True)
class Login:
    """This run's login as the host sees it: the address it comes from (None: not over SSH)
    and the user's groups."""

    client: str | None = None
    groups: tuple[str, ...] = ()


class LoginContext(FactBase[Login]):
    """The Login of this run. Read without sudo (sudo drops SSH_CLIENT)."""

    def command(self) -> str:
        return 'echo "client ${SSH_CLIENT%% *}"; echo "groups $(id -Gn)"'

    @staticmethod
    def default() -> Login:
        return Login()

    def process(self, output: list[str]) -> Login:
        found = dict(line.strip().partition(" ")[::2] for line in output if line.strip())
        return Login(found.get("client") or None, tuple(found.get("groups", "").split()))


class PathModes(FactBase[dict[str, str | None]]):
    """Mode, owner and group of paths, in one command: {path: "600:root:root"}, None if absent."""

    def command(self, paths: list[str]) -> str:
        quoted = " ".join(shlex.quote(p) for p in paths)
        return (
            f'for f in {quoted}; do if [ -e "$f" ]; then echo "$f $(stat -c %a:%U:%G "$f")"; '
            "else printf '%s -\\n' \"$f\"; fi; done"
        )

    @staticmethod
    def default() -> dict[str, str | None]:
        return {}

    def process(self, output: list[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for line in output:
            path, _, state = line.strip().rpartition(" ")
            found[path] = None if state == "-" else state
        return found


@dataclass(frozen=True)
class Fail2ban:
    """jail.local's SHA-1 (None: absent) and the jails fail2ban has loaded (None: not
    running)."""

    jail_sha1: str | None
    jails: list[str] | None


class Fail2banState(FactBase[Fail2ban]):
    """The Fail2ban state, in one command."""

    def command(self, jail_local: str) -> str:
        return sectioned(
            {
                "sha1": f"sha1sum < {shlex.quote(jail_local)} 2>/dev/null | cut -d' ' -f1",
                "jails": Fail2banJails().command(),
            }
        )

    def process(self, output: list[str]) -> Fail2ban:
        parts = split_sections(output)
        sha1 = [line.strip() for line in parts.get("sha1", []) if line.strip()]
        return Fail2ban(
            jail_sha1=sha1[0] if sha1 else None,
            jails=Fail2banJails().process(parts.get("jails", [])),
        )


# ----------------------------------------------------------------------------- apt sources

SOURCES_GLOBS = ("/etc/apt/sources.list", "/etc/apt/sources.list.d/*.list",
                 "/etc/apt/sources.list.d/*.sources")  # fmt: skip
FILE_MARK = "==> bulwark-apt-source "
BLANK_MARK = "==> bulwark-blank"  # pyinfra drops empty output lines; deb822 needs them


@dataclass(frozen=True)
class AptSource:
    """One enabled `deb` entry of apt's sources, whichever format it is written in."""

    file: str
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]


def parse_sources(files: dict[str, str]) -> list[AptSource]:
    """The enabled binary (`deb`) entries of one-line `.list` files and deb822 `.sources` files;
    `deb-src`, commented and `Enabled: no` entries are not sources of updates."""
    found: list[AptSource] = []
    for path, text in files.items():
        if path.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                key = ""
                for line in stanza.splitlines():
                    if not line.strip() or line.lstrip().startswith("#"):
                        continue
                    if line[:1].isspace() and key:  # a continuation line
                        fields[key] += " " + line.strip()
                        continue
                    key, _, value = line.partition(":")
                    key = key.strip().lower()
                    fields[key] = value.strip()
                types = fields.get("types", "").split()
                if "deb" not in types or fields.get("enabled", "yes").lower() == "no":
                    continue
                found.append(AptSource(path, tuple(fields.get("uris", "").split()),
                                       tuple(fields.get("suites", "").split()),
                                       tuple(fields.get("components", "").split())))  # fmt: skip
            continue
        for line in text.splitlines():
            words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                found.append(AptSource(path, (words[1],), (words[2],), tuple(words[3:])))
    return found


class AptSources(FactBase[list[AptSource]]):
    """apt's enabled binary sources, from every sources file in either format."""

    def command(self) -> str:
        return (
            f'for f in {" ".join(SOURCES_GLOBS)}; do [ -f "$f" ] && '
            f"echo '{FILE_MARK}'\"$f\" && sed 's/^[[:space:]]*$/{BLANK_MARK}/' \"$f\"; "
            "done; true"
        )

    def process(self, output: list[str]) -> list[AptSource]:
        files: dict[str, str] = {}
        current = None
        for line in output:
            if line.startswith(FILE_MARK):
                current = line.removeprefix(FILE_MARK)
                files[current] = ""
            elif current is not None:
                files[current] += ("" if line == BLANK_MARK else line) + "\n"
        return parse_sources(files)


# A fact asked for with its arguments: (fact class, sorted (name, value) pairs), lists as tuples
# so that the key hashes.
FactKey = tuple[type[FactBase[Any]], tuple[tuple[str, Any], ...]]
AHEAD = "##bulwark-read-ahead "


def fact_key(cls: type[FactBase[Any]], kwargs: dict[str, Any]) -> FactKey:
    frozen = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    return cls, tuple(sorted(frozen.items()))


def _shell(fact: FactBase[Any], attribute: str, kwargs: dict[str, Any]) -> str | None:
    """A fact's command (or required program) as shell text. Some of pyinfra's facts keep what
    their command was given for their parser: parse with the same instance."""
    found = getattr(fact, attribute)
    value = found(**kwargs) if callable(found) else found
    if value is None or isinstance(value, str):
        return value
    raw: str = value.get_raw_value()  # a pyinfra StringCommand
    return raw


class ReadAhead(FactBase[dict[int, list[str]]]):
    """Many facts in one remote command: each fact's own command runs after a marker line
    naming its place in `keys`, and its exit status follows its output. The value is each
    fact's output lines by place, for the facts whose command succeeded (`read_ahead` parses
    them); a fact whose command failed, or whose program is missing, is left out, so that
    asking for it again goes to the host and fails or defaults as pyinfra's own read does."""

    def command(self, keys: list[FactKey]) -> str:
        parts = []
        for n, (cls, items) in enumerate(keys):
            fact, kwargs = cls(), dict(items)
            command = _shell(fact, "command", kwargs)
            needs = _shell(fact, "requires_command", kwargs)
            if needs:
                command = f"command -v {needs} >/dev/null 2>&1 && {{ {command}; }}"
            # A subshell each: one fact's `cd` (pyinfra's LinuxDistribution) stays its own.
            parts.append(f"echo '{AHEAD}{n}'; ( {command} ) 2>/dev/null; echo \"{AHEAD}$?\"")
        return "; ".join(parts)

    @staticmethod
    def default() -> dict[int, list[str]]:
        return {}

    def process(self, output: list[str]) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        lines: list[str] = []
        place: int | None = None
        for line in output:
            if not line.startswith(AHEAD):
                lines.append(line)
            elif place is None:
                place, lines = int(line.removeprefix(AHEAD)), []
            else:
                if line.removeprefix(AHEAD).strip() == "0":
                    found[place] = lines
                place = None
        return found


def read_ahead(keys: list[FactKey], sections: dict[int, list[str]]) -> dict[FactKey, Any]:
    """The facts' values from ReadAhead's sections, each parsed by its own class as pyinfra
    would (no output: the fact's default)."""
    values: dict[FactKey, Any] = {}
    for place, lines in sections.items():
        cls, items = keys[place]
        fact = cls()
        _shell(fact, "command", dict(items))
        values[keys[place]] = fact.process(lines) if lines else fact.default()
    return values
