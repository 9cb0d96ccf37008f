"""pyinfra operations bulwark's deploys share. Each reads ONE batched fact (bulwark/hosts/facts.py)
for everything it compares, so an idempotent re-run costs a handful of remote commands rather
than three per file (pyinfra's files.put reads File, Directory and Sha1File every time). And the
facts a whole run will ask for are read ahead in one command (`prefetch`): `fact` answers from
that read until an operation changes something on the host, and from the host after."""

from __future__ import annotations

import hashlib
import io
import secrets
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from pyinfra import host, logger
from pyinfra.api import FactBase, OperationError, operation
from pyinfra.api.command import FileUploadCommand
from pyinfra.facts.apt import noninteractive_apt
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import FindInFile
from pyinfra.operations import apt
from pyinfra.operations import files as pyfiles

from bulwark.hosts.facts import (
    APT_LISTS_STAMP,
    UPGRADED_STAMP,
    AptSource,
    AptSources,
    CommandsExist,
    FactKey,
    FileStates,
    FirstUpgrade,
    PathModes,
    ReadAhead,
    UnitStates,
    fact_key,
    read_ahead,
)

# pyinfra uploads through a temp dir; /tmp becomes noexec, so bulwark uses its own, private to
# the deploy user (0700), created first thing by the harden deploy.
UPLOAD_DIR = "/var/lib/bulwark/tmp"

# What several areas ask about is read once per run: pyinfra 3 does not cache facts, and every
# remote command costs a shell and a sudo on the host (0.3 s or more on a small or emulated one).
# An operation asking for a subset of these gets the one read; one that changes something
# forgets it, so later operations read again.
SHARED_FILES = frozenset(
    {
        "/etc/apt/apt.conf.d/80bulwark",
        "/etc/needrestart/conf.d/bulwark.conf",
        "/usr/local/sbin/bulwark-ssh-revert",
        "/etc/apt/apt.conf.d/50unattended-upgrades",
        "/etc/apt/apt.conf.d/20auto-upgrades",
        "/etc/sysctl.d/60-bulwark.conf",
        "/etc/sysctl.d/99-protect-links.conf",
        "/etc/modprobe.d/bulwark-disabled.conf",
        "/etc/security/limits.d/bulwark-nocore.conf",
        "/etc/systemd/coredump.conf.d/bulwark.conf",
        "/etc/issue",
        "/etc/issue.net",
        "/etc/profile.d/bulwark-tmout.sh",
        "/etc/audit/rules.d/bulwark.rules",
        "/etc/audit/rules.d/99-bulwark-immutable.rules",
        "/etc/aide/aide.conf",
        "/etc/systemd/system/bulwark-aide-check.service",
        "/etc/systemd/system/bulwark-aide-check.timer",
        "/etc/systemd/system/systemd-logind.service.d/bulwark-hidepid.conf",
        "/etc/systemd/system/polkit.service.d/bulwark-hidepid.conf",
    }
)
# A follow-up check (ConfigFile.then) leaves a stamp when it passes: a check that failed once
# runs again on the next run, although its files are in place by then.
CHECKED_DIR = "/var/lib/bulwark/checked"
SHARED_FILES |= {f"{CHECKED_DIR}/{name}" for name in ("60-bulwark.conf", "50unattended-upgrades")}
SHARED_UNITS = frozenset(
    {"apt-daily.timer", "apt-daily-upgrade.timer", "systemd-timesyncd.service", "chrony.service"}
    | {"auditd.service", "acct.service", "sysstat.service", "bulwark-aide-check.timer"}
    | {"chkrootkit.timer", "postgresql.service", "pgbouncer.service"}
)
SHARED_PROGRAMS = ("docker", "chronyd", "snap")

T = TypeVar("T")
_read_once: dict[tuple[int, str, str], Any] = {}


def _once(kind: str, read: Callable[[], T]) -> T:
    key = (id(host.state), host.name, kind)
    if key not in _read_once:
        _read_once[key] = read()
    result: T = _read_once[key]
    return result


def forget(kind: str) -> None:
    _read_once.pop((id(host.state), host.name, kind), None)


_ahead: dict[tuple[int, str], dict[FactKey, Any]] = {}


def prefetch(keys: list[FactKey]) -> None:
    """Read the facts `keys` name in one remote command, for `fact` to answer from."""
    sections = host.get_fact(ReadAhead, keys=keys)
    _ahead[(id(host.state), host.name)] = read_ahead(keys, sections)


def _changed_so_far() -> bool:
    """Whether an operation this run already finished on this host ran a command."""
    done = (data.operation_meta for data in host.state.ops[host].values())
    return any(meta.is_complete() and meta.executed for meta in done)


def fact(cls: type[FactBase[T]], **kwargs: Any) -> T:
    """`host.get_fact(cls, **kwargs)`, answered from the read-ahead while nothing on the host
    has changed this run. An operation asks before it yields its first command."""
    if not _ahead:  # no read-ahead in this process (an area run alone)
        return host.get_fact(cls, **kwargs)
    where = (id(host.state), host.name)
    ahead = _ahead.get(where)
    if ahead is not None and _changed_so_far():
        del _ahead[where]
        ahead = None
    if ahead is not None:
        key = fact_key(cls, kwargs)
        if key in ahead:
            value: T = ahead[key]
            return value
        # The read below is correct, only slower: harden's READ_AHEAD lacks this fact. In the
        # log (pyinfra shows warnings without -v), where the lab's re-run test looks for it.
        logger.warning(f"{host.print_prefix}{READ_AGAIN}{cls.__name__} {sorted(kwargs)}")
    return host.get_fact(cls, **kwargs)


READ_AGAIN = "read again, not read ahead: "


def file_states(paths: list[str]) -> dict[str, str | None]:
    if set(paths) <= SHARED_FILES:
        return _once("files", lambda: fact(FileStates, paths=sorted(SHARED_FILES)))
    # Read alone, on purpose: paths known only on the host (Postgres's versioned conf.d).
    return host.get_fact(FileStates, paths=paths)


def unit_states(units: list[str]) -> dict[str, tuple[bool, bool]]:
    if set(units) <= SHARED_UNITS:
        return _once("units", lambda: fact(UnitStates, units=sorted(SHARED_UNITS)))
    return host.get_fact(UnitStates, units=units)  # read alone, as above


def program_exists(program: str) -> bool:
    """Whether `program` is on root's PATH (SHARED_PROGRAMS are all asked in one command)."""
    if program in SHARED_PROGRAMS:
        found = _once("programs", lambda: fact(CommandsExist, programs=SHARED_PROGRAMS))
        return program in found
    return program in fact(CommandsExist, programs=[program])


@dataclass(frozen=True)
class ConfigFile:
    """A file bulwark owns on the host, and what to run once after it changes."""

    dest: str
    content: str
    mode: str = "644"
    user: str = "root"
    group: str = "root"
    then: str | None = None
    # `then` is a check that must pass (not just an action such as a restart): until it has,
    # it runs again on every run, even with the file in place.
    checked: bool = False

    @property
    def state(self) -> str:
        """As FileStates reports a file that is exactly as wanted."""
        sha1 = hashlib.sha1(self.content.encode(), usedforsecurity=False).hexdigest()
        return f"{self.mode.lstrip('0') or '0'}:{self.user}:{self.group}:{sha1}"


def put_secret(content: str, dest: str, *, mode: str, group: str = "root") -> Iterator[Any]:
    """Commands that put a file holding secrets (SCRAM verifiers, SQL that sets them) in place:
    never printed by `--diff` (pyinfra's files.put shows whole files), always staged."""
    yield from _staged([ConfigFile(dest, content, mode=mode, group=group)])


def _staged(files: list[ConfigFile]) -> Iterator[Any]:
    """Each file uploaded as the login user into its private upload directory (no sudo), then
    all installed with their owner and mode by one sudo command, the staged copies removed
    whatever happened: 1 + N round trips."""
    staged = [f"{UPLOAD_DIR}/put-{secrets.token_hex(8)}" for _ in files]
    for f, path in zip(files, staged, strict=True):
        yield FileUploadCommand(io.StringIO(f.content), path, _sudo=False)
    installs = " && ".join(
        f"install -D -m {shlex.quote(f.mode)} -o {shlex.quote(f.user)} -g {shlex.quote(f.group)} "
        f"{path} {shlex.quote(f.dest)}"
        for f, path in zip(files, staged, strict=True)
    )
    yield f"{installs}; r=$?; rm -f {' '.join(staged)}; exit $r"


def stamp_for(files: list[ConfigFile], then: str) -> ConfigFile:
    """The stamp the check `then` leaves when it passes: named after the first file it checks,
    holding a digest of the command and of those files, as they are wanted."""
    checked = [f for f in files if f.then == then]
    digest = hashlib.sha1(then.encode(), usedforsecurity=False)
    for f in checked:
        digest.update(f.state.encode())
    name = checked[0].dest.rsplit("/", 1)[-1]
    return ConfigFile(f"{CHECKED_DIR}/{name}", digest.hexdigest() + "\n", mode="600")


def put_files(files: list[ConfigFile]) -> Iterator[Any]:
    """Commands that put `files` in place: staged within a harden (its upload directory set
    as the operation's temp dir), 1 + N round trips instead of pyinfra's files.put's seven per
    file (three facts, upload, copy, chown, chmod); otherwise, and for --diff (which only
    files.put prints), files.put."""
    arguments: dict[str, Any] = dict(host.current_op_global_arguments or {})
    staging = arguments.get("_temp_dir")
    if staging != UPLOAD_DIR or host.state.config.DIFF:
        for f in files:
            yield from pyfiles.put._inner(
                src=io.StringIO(f.content),
                dest=f.dest,
                user=f.user,
                group=f.group,
                mode=f.mode,
                create_remote_dir=True,
            )
        return
    yield from _staged(files)


@operation()
def config_files(files: list[ConfigFile]):  # type: ignore[no-untyped-def]
    """Put each file in place when its content, mode or owner differ; then run, once each, the
    follow-up commands of the files that changed, and of those whose last check did not pass.

    + files: the files, in the order they are written
    """
    follow_ups = list(dict.fromkeys(f.then for f in files if f.then))
    checks = list(dict.fromkeys(f.then for f in files if f.then and f.checked))
    stamps = {then: stamp_for(files, then) for then in checks}
    states = file_states([f.dest for f in files] + [s.dest for s in stamps.values()])
    due: list[str] = [
        then for then, stamp in stamps.items() if states.get(stamp.dest) != stamp.state
    ]
    todo = [f for f in files if states.get(f.dest) != f.state]
    changed = len(todo)
    if todo:
        forget("files")
        yield from put_files(todo)
    for f in todo:
        if f.then and f.then not in due:
            due.append(f.then)
    for then in follow_ups:
        if then not in due:
            continue
        stamp = stamps.get(then)
        if stamp is None:
            yield then
            continue
        forget("files")
        yield (
            f"{{ {then}; }} && install -d -m 700 {CHECKED_DIR} && "
            f"printf '%s' {shlex.quote(stamp.content)} > {stamp.dest} && chmod 600 {stamp.dest}"
        )
    if not changed and not due:
        host.noop(f"{len(files)} files are already in place")


@operation()
def first_run_upgrade(  # type: ignore[no-untyped-def]
    packages: list[str], alongside: tuple[str, ...] = (), preseed: tuple[str, ...] = ()
):
    """On a host bulwark has not upgraded yet: refresh the apt lists, upgrade everything and
    install `packages` (without recommends), in one apt transaction: one dependency solve, one
    round of triggers. Later runs leave upgrades to unattended-upgrades (security, daily) and
    to the operator, so a re-run changes nothing and never waits on apt.

    + packages: Debian package names
    + alongside: commands that start slow work in the background first (first run only), to
      use the CPU apt leaves idle while it downloads
    + preseed: debconf answers the packages' scripts read at install (debconf-set-selections
      lines), so they configure once as wanted instead of being undone afterwards
    """
    done_at = fact(FirstUpgrade)
    if done_at:
        host.noop(f"first full upgrade done {done_at}; unattended-upgrades keeps up since")
        return
    yield from alongside
    # apt's periodic hook writes this stamp, `apt-get update` does not: touch it ourselves.
    names = " ".join(shlex.quote(p) for p in packages)
    answer = f"{debconf_answers(preseed)} && " if preseed else ""
    yield (
        f"{answer}apt-get update && touch {APT_LISTS_STAMP} && "
        f"{noninteractive_apt('dist-upgrade --no-install-recommends')} {names} && "
        f"install -d -m 711 {shlex.quote(UPGRADED_STAMP.rsplit('/', 1)[0])} && "
        f"touch {UPGRADED_STAMP}"
    )


def debconf_answers(lines: tuple[str, ...]) -> str:
    """Shell that gives debconf `lines` (debconf-set-selections lines) as answers."""
    answers = " ".join(shlex.quote(line) for line in lines)
    return f"printf '%s\\n' {answers} | debconf-set-selections"


@operation()
def packages_present(  # type: ignore[no-untyped-def]
    packages: list[str], cache_time: int = 3600, preseed: tuple[str, ...] = ()
):
    """Install missing packages (without recommends), refreshing apt lists older than
    `cache_time` first - only when something is missing, so a converged host is never touched.

    + packages: Debian package names
    + cache_time: seconds the apt lists count as fresh
    + preseed: debconf answers for the packages' scripts, as in first_run_upgrade
    """
    installed = fact(DebPackages)
    missing = [p for p in packages if p not in installed]
    if not missing:
        host.noop(f"{len(packages)} packages are installed")
        return
    if preseed:
        yield debconf_answers(preseed)
    yield from apt.update._inner(cache_time=cache_time)
    yield from apt.packages._inner(packages=missing, no_recommends=True)


@operation()
def line_set(path: str, pattern: str, line: str):  # type: ignore[no-untyped-def]
    """The line of `path` that `pattern` matches reads `line` (appended when none matches).

    + path: a config file, e.g. /etc/default/ufw
    + pattern: the start of the line, e.g. "^IPV6="
    + line: the whole line wanted, e.g. "IPV6=yes"
    """
    if fact(FindInFile, path=path, pattern=pattern) == [line]:
        host.noop(f"{path} has {line}")
        return
    yield from line_in(path, line, '$0 ~ ENVIRON["BULWARK_KEY"]', key=pattern, regex=pattern)


def line_in(path: str, line: str, match: str, *, key: str, regex: str) -> Iterator[Any]:
    """Commands that make `line` the line of `path` that `match` (see only_line) selects: one
    command; with --diff, pyinfra's files.line (three, but it prints the lines it replaces),
    whose `regex` (extended, as grep -E reads it) must select the same lines."""
    if host.state.config.DIFF:
        yield from pyfiles.line._inner(path=path, line=regex, replace=line, extended_regex=True)
        return
    yield only_line(path, line, match, key=key)


def only_line(path: str, line: str, match: str, *, key: str) -> str:
    """Shell that makes `line` the only line of `path` the awk condition `match` selects (it
    reads `key` as ENVIRON["BULWARK_KEY"]): in place of the first such line, the others
    dropped, appended when there is none (a missing file is created, as files.line does). One
    round trip; written beside the file (owner and mode copied) and moved over it, so never
    half a file."""
    new = shlex.quote(f"{path}.bulwark-new")
    program = (
        f'{match} {{ if (!done) print ENVIRON["BULWARK_LINE"]; done = 1; next }} {{ print }} '
        'END { if (!done) print ENVIRON["BULWARK_LINE"] }'
    )
    quoted = shlex.quote(path)
    return (
        f"{{ [ -e {quoted} ] || : > {quoted}; }} && cp -p {quoted} {new} && "
        f"BULWARK_KEY={shlex.quote(key)} BULWARK_LINE={shlex.quote(line)} "
        f"awk {shlex.quote(program)} {quoted} > {new} && mv {new} {quoted}"
    )


@operation()
def units_running(units: list[str]):  # type: ignore[no-untyped-def]
    """Enable and start systemd units that are not enabled or not active.

    + units: unit names, e.g. "apt-daily.timer"
    """
    states = unit_states(units)
    todo = [u for u in units if states.get(u) != (True, True)]
    if not todo:
        host.noop(f"{', '.join(units)} enabled and active")
        return
    forget("units")
    # `enable` only for units that are not: it reloads systemd, and for a unit that also has
    # an init script runs update-rc.d, which reloads it again (6 s for fail2ban on a small
    # host). One command for all: a unit only stopped is started.
    disabled = [u for u in todo if not states.get(u, (False, False))[0]]
    stopped = [u for u in todo if u not in disabled]
    commands = [
        f"systemctl {verb} {' '.join(shlex.quote(u) for u in chosen)}"
        for verb, chosen in (("enable --now", disabled), ("start", stopped))
        if chosen
    ]
    yield " && ".join(commands)


@operation()
def permissions(root_only: dict[str, str], no_setuid: list[str]):  # type: ignore[no-untyped-def]
    """Make existing paths root:root with the given mode, and drop the setuid/setgid bits of
    programs durably (a dpkg-statoverride keeps upgrades from putting them back). Absent paths
    stay absent. One fact for all of them.

    + root_only: path -> octal mode, e.g. {"/etc/crontab": "600"}
    + no_setuid: programs that must not run with raised privileges
    """
    states = fact(PathModes, paths=[*root_only, *no_setuid])
    todo = []
    for path, mode in root_only.items():
        state = states.get(path)
        if state is not None and state != f"{mode}:root:root":
            todo.append(f"chown root:root {shlex.quote(path)} && chmod {mode} {shlex.quote(path)}")
    for path in no_setuid:
        state = states.get(path)
        if state is not None and len(state.split(":")[0]) == 4 and state[0] in "2467":
            quoted = shlex.quote(path)
            todo.append(
                f"{{ dpkg-statoverride --update --force-statoverride-add --add root root 0755 "
                f"{quoted} 2>/dev/null || chmod u-s,g-s {quoted}; }}"
            )
    if not todo:
        host.noop(f"{len(root_only) + len(no_setuid)} paths have the wanted owners and modes")
        return
    yield " && ".join(todo)  # one round trip for all


# ----------------------------------------------------------------------------- apt sources

SECURITY_SOURCES = "/etc/apt/sources.list.d/bulwark-security.sources"
ARCHIVES = {
    # distro: (security URI, keyring); Ubuntu's ports architectures have their own host.
    "debian": ("http://deb.debian.org/debian-security",
               "/usr/share/keyrings/debian-archive-keyring.gpg"),
    "ubuntu": ("http://security.ubuntu.com/ubuntu",
               "/usr/share/keyrings/ubuntu-archive-keyring.gpg"),
}  # fmt: skip
UBUNTU_PORTS = "http://ports.ubuntu.com/ubuntu-ports"


def missing_suites(sources: list[AptSource], codename: str) -> list[str]:
    """Which of `<codename>-security` and `<codename>-updates` no enabled source carries."""
    present = {suite for source in sources for suite in source.suites}
    return [f"{codename}-{pocket}" for pocket in ("security", "updates")
            if f"{codename}-{pocket}" not in present]  # fmt: skip


def sources_stanzas(
    distro_id: str, codename: str, sources: list[AptSource], missing: list[str]
) -> str:
    """deb822 stanzas (apt's current format, Debian 12+ and Ubuntu 24.04+ write theirs so) for
    the missing suites, with the components and URIs of the release's own entry."""
    main = next((s for s in sources if codename in s.suites), None)
    components = " ".join(main.components) if main and main.components else "main"
    security_uri, keyring = ARCHIVES[distro_id]
    if distro_id == "ubuntu" and main and any("ubuntu-ports" in u for u in main.uris):
        security_uri = UBUNTU_PORTS
    stanzas = []
    for suite in missing:
        if suite.endswith("-security"):
            uris = security_uri
        elif main is not None:
            uris = " ".join(main.uris)
        else:
            continue  # no entry for the release itself to take the updates mirror from
        stanzas.append(f"Types: deb\nURIs: {uris}\nSuites: {suite}\nComponents: {components}\n"
                       f"Signed-By: {keyring}\n")  # fmt: skip
    header = (
        "# Managed by bulwark: the suites this host's apt sources lacked, so that security\n"
        "# updates can arrive (bulwark.updates.manage_sources false leaves sources alone).\n"
    )
    return header + "\n".join(stanzas) if stanzas else ""


@operation()
def security_sources(distro_id: str, codename: str, manage: bool):  # type: ignore[no-untyped-def]
    """Make sure apt's sources carry the release's security archive (and its updates): an
    unattended-upgrades configured for an origin apt never downloads installs nothing.

    + distro_id: "debian" or "ubuntu"
    + codename: the release, e.g. "bookworm"
    + manage: add what is missing (else refuse, naming it)
    """
    sources = fact(AptSources)
    missing = missing_suites(sources, codename)
    security = f"{codename}-security"
    if not manage and security in missing:
        raise OperationError(
            f"{host.name}: apt's sources lack {security}, so security updates cannot arrive: "
            "add it to the host's sources, or drop bulwark.updates.manage_sources: false to "
            "let bulwark add it"
        )
    content = sources_stanzas(distro_id, codename, sources, missing) if manage else ""
    if not content:
        host.noop(f"apt has {security} among its sources")
        return
    yield from pyfiles.put._inner(  # not among the SHARED_FILES read once: nothing to forget
        src=io.StringIO(content), dest=SECURITY_SOURCES, user="root", group="root", mode="644"
    )
    if fact(FirstUpgrade):  # the first run's own `apt-get update` reads it otherwise
        yield f"apt-get update -q && touch {APT_LISTS_STAMP}"
