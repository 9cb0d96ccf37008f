"""Kernel and file system: live sysctl values (dev-sec linux-baseline sysctl-*), modules that
cannot load, mount options, core dumps."""

from __future__ import annotations

import re

import pytest

from bulwark.hosts.commands import PROC_GROUP
from bulwark.settings.hosts import HardenSettings
from bulwark.verify.controls import control, not_applicable
from bulwark.verify.state import HostState

# (control id, title, dev-sec id, {key: wanted}); wanted is a regex over the live value.
SYSCTL: list[tuple[str, str, str, dict[str, str]]] = [
    ("sysctl-ip-forwarding", "Not a router: IPv4 forwarding off", "sysctl-01",
     {"net.ipv4.ip_forward": "0", "net.ipv4.conf.all.forwarding": "0"}),
    ("sysctl-rp-filter", "Reverse path filtering on", "sysctl-02",
     {"net.ipv4.conf.all.rp_filter": "1", "net.ipv4.conf.default.rp_filter": "1"}),
    ("sysctl-icmp-bogus", "Bogus ICMP error responses ignored", "sysctl-03",
     {"net.ipv4.icmp_ignore_bogus_error_responses": "1"}),
    ("sysctl-icmp-broadcast", "Broadcast pings ignored (no smurf amplifier)", "sysctl-04",
     {"net.ipv4.icmp_echo_ignore_broadcasts": "1"}),
    ("sysctl-icmp-ratelimit", "ICMP errors rate-limited", "sysctl-05",
     {"net.ipv4.icmp_ratelimit": "100"}),
    ("sysctl-icmp-ratemask", "ICMP rate limit covers the abusable types", "sysctl-06",
     {"net.ipv4.icmp_ratemask": "88089"}),
    ("sysctl-arp-ignore", "ARP answered only for the asking interface", "sysctl-08",
     {"net.ipv4.conf.all.arp_ignore": "[12]"}),
    ("sysctl-arp-announce", "ARP announces the best local source", "sysctl-09",
     {"net.ipv4.conf.all.arp_announce": "2"}),
    ("sysctl-rfc1337", "TIME-WAIT assassination protection (RFC 1337)", "sysctl-10",
     {"net.ipv4.tcp_rfc1337": "1"}),
    ("sysctl-syncookies", "SYN cookies against SYN floods", "sysctl-11",
     {"net.ipv4.tcp_syncookies": "1"}),
    ("sysctl-shared-media", "Shared media redirects follow RFC 1620", "sysctl-12",
     {"net.ipv4.conf.all.shared_media": "1", "net.ipv4.conf.default.shared_media": "1"}),
    ("sysctl-source-route", "Source-routed packets refused (IPv4 and IPv6)", "sysctl-13",
     {"net.ipv4.conf.all.accept_source_route": "0",
      "net.ipv4.conf.default.accept_source_route": "0",
      "net.ipv6.conf.all.accept_source_route": "0",
      "net.ipv6.conf.default.accept_source_route": "0"}),
    ("sysctl-accept-redirects", "ICMP redirects refused", "sysctl-14",
     {"net.ipv4.conf.all.accept_redirects": "0", "net.ipv4.conf.default.accept_redirects": "0"}),
    ("sysctl-secure-redirects", "Even 'secure' redirects refused", "sysctl-15",
     {"net.ipv4.conf.all.secure_redirects": "0", "net.ipv4.conf.default.secure_redirects": "0"}),
    ("sysctl-send-redirects", "No redirects sent (not a router)", "sysctl-16",
     {"net.ipv4.conf.all.send_redirects": "0", "net.ipv4.conf.default.send_redirects": "0"}),
    ("sysctl-log-martians", "Impossible source addresses are logged", "sysctl-17",
     {"net.ipv4.conf.all.log_martians": "1", "net.ipv4.conf.default.log_martians": "1"}),
    ("sysctl-ipv6-forwarding", "Not a router: IPv6 forwarding off", "sysctl-19",
     {"net.ipv6.conf.all.forwarding": "0"}),
    ("sysctl-ipv6-redirects", "IPv6 redirects refused", "sysctl-20",
     {"net.ipv6.conf.all.accept_redirects": "0", "net.ipv6.conf.default.accept_redirects": "0"}),
    ("sysctl-ipv6-router-solicitations", "No IPv6 router solicitations", "sysctl-21",
     {"net.ipv6.conf.default.router_solicitations": "0"}),
    ("sysctl-ipv6-ra-rtr-pref", "Router preference from advertisements ignored", "sysctl-22",
     {"net.ipv6.conf.default.accept_ra_rtr_pref": "0"}),
    ("sysctl-ipv6-ra-pinfo", "Prefixes from advertisements ignored", "sysctl-23",
     {"net.ipv6.conf.default.accept_ra_pinfo": "0"}),
    ("sysctl-ipv6-ra-defrtr", "Default routes from advertisements ignored", "sysctl-24",
     {"net.ipv6.conf.default.accept_ra_defrtr": "0"}),
    ("sysctl-ipv6-accept-ra", "Router advertisements ignored", "sysctl-25",
     {"net.ipv6.conf.all.accept_ra": "0", "net.ipv6.conf.default.accept_ra": "0"}),
    ("sysctl-ipv6-autoconf", "No IPv6 address autoconfiguration", "sysctl-26",
     {"net.ipv6.conf.default.autoconf": "0"}),
    ("sysctl-ipv6-dad", "No duplicate address detection probes", "sysctl-27",
     {"net.ipv6.conf.default.dad_transmits": "0"}),
    ("sysctl-ipv6-max-addresses", "One global IPv6 address per interface", "sysctl-28",
     {"net.ipv6.conf.default.max_addresses": "1"}),
    ("sysctl-modules-disabled", "Module loading left to modprobe policy", "sysctl-29",
     {"kernel.modules_disabled": "0"}),
    ("sysctl-sysrq", "Magic SysRq off", "sysctl-30", {"kernel.sysrq": "0"}),
    ("sysctl-suid-dumpable", "setuid programs never dump core", "sysctl-31a",
     {"fs.suid_dumpable": "0"}),
    ("sysctl-aslr", "Full address space layout randomisation", "sysctl-32",
     {"kernel.randomize_va_space": "2"}),
    ("sysctl-protected-links", "Links, FIFOs and regular files in sticky dirs protected",
     "sysctl-34",
     {"fs.protected_fifos": "2", "fs.protected_hardlinks": "1",
      "fs.protected_regular": "2", "fs.protected_symlinks": "1"}),
    ("sysctl-kernel-pointers", "Kernel pointers and the kernel log hidden from users", "",
     {"kernel.kptr_restrict": "2", "kernel.dmesg_restrict": "1"}),
    ("sysctl-ptrace", "Processes cannot trace processes that are not their children", "",
     {"kernel.yama.ptrace_scope": "[123]"}),
    ("sysctl-bpf", "Unprivileged BPF off and the BPF JIT hardened", "",
     {"kernel.unprivileged_bpf_disabled": "[12]", "net.core.bpf_jit_harden": "2"}),
    ("sysctl-perf-events", "No unprivileged perf events (kernel profiling)", "",
     {"kernel.perf_event_paranoid": "[34]"}),
    ("sysctl-tty-ldisc", "Users cannot make the kernel load TTY line disciplines", "",
     {"dev.tty.ldisc_autoload": "0"}),
]  # fmt: skip
FORWARDING = {"sysctl-ip-forwarding", "sysctl-ipv6-forwarding"}
ROUTER_ADVERTISEMENTS = {
    "sysctl-ipv6-router-solicitations", "sysctl-ipv6-ra-rtr-pref", "sysctl-ipv6-ra-pinfo",
    "sysctl-ipv6-ra-defrtr", "sysctl-ipv6-accept-ra", "sysctl-ipv6-autoconf",
    "sysctl-ipv6-dad", "sysctl-ipv6-max-addresses",
}  # fmt: skip


# CIS Debian Linux 12 Benchmark v1.1.0 items for the rows that have one.
SYSCTL_CIS = {
    "sysctl-ip-forwarding": "3.3.1", "sysctl-ipv6-forwarding": "3.3.1",
    "sysctl-send-redirects": "3.3.2", "sysctl-icmp-bogus": "3.3.3",
    "sysctl-icmp-broadcast": "3.3.4", "sysctl-accept-redirects": "3.3.5",
    "sysctl-ipv6-redirects": "3.3.5", "sysctl-secure-redirects": "3.3.6",
    "sysctl-rp-filter": "3.3.7", "sysctl-source-route": "3.3.8", "sysctl-log-martians": "3.3.9",
    "sysctl-syncookies": "3.3.10", "sysctl-ipv6-accept-ra": "3.3.11", "sysctl-aslr": "1.5.1",
    "sysctl-ptrace": "1.5.2", "sysctl-suid-dumpable": "1.5.3",
}  # fmt: skip


def _param(control_id: str, title: str, devsec: str, wanted: dict[str, str]) -> object:
    mark = control(
        control_id,
        title,
        rationale="dev-sec linux-baseline / os_hardening value for a server that does not route.",
        cis=SYSCTL_CIS.get(control_id, ""),
        devsec=devsec or (),
    )
    return pytest.param(control_id, wanted, marks=mark, id=control_id)


@pytest.mark.parametrize(("control_id", "wanted"), [_param(*row) for row in SYSCTL])
def test_sysctl(
    state: HostState, expected: HardenSettings, control_id: str, wanted: dict[str, str]
) -> None:
    if control_id in FORWARDING and expected.kernel.routes_or_containers:
        not_applicable("declared as a router or container host (kernel.routes_or_containers)")
    if control_id in ROUTER_ADVERTISEMENTS and expected.kernel.ipv6_autoconf:
        not_applicable("IPv6 is configured by router advertisements (kernel.ipv6_autoconf)")
    problems = []
    for key, pattern in wanted.items():
        value = state.sysctl.get(key)
        if value is None:
            problems.append(f"{key} is not in sysctl -a")
        elif not re.fullmatch(pattern, value):
            problems.append(f"{key} = {value} (want {pattern})")
    assert not problems, "; ".join(problems)


@control(
    "sysctl-tcp-timestamps",
    "TCP timestamps (dev-sec turns them off; bulwark keeps them, see reason)",
    rationale="dev-sec disables them to hide uptime.",
    devsec="sysctl-07",
)
def test_tcp_timestamps(state: HostState) -> None:
    release = state.text("kernel").strip()
    major, minor = (int(x) for x in re.findall(r"\d+", release)[:2])
    if (major, minor) >= (4, 10):
        not_applicable(
            f"kernel {release} randomises timestamp offsets per connection (>= 4.10), so they "
            "leak no uptime; turning them off would lose PAWS (RFC 7323) protection"
        )
    assert state.sysctl.get("net.ipv4.tcp_timestamps") == "0", "timestamps leak uptime"


@control(
    "sysctl-core-pattern",
    "If setuid programs may dump, dumps go to a safe absolute path",
    rationale="A relative core pattern lets a setuid dump land in an attacker's directory.",
    devsec="sysctl-31b",
)
def test_core_pattern(state: HostState) -> None:
    if state.sysctl.get("fs.suid_dumpable") != "2":
        not_applicable(f"fs.suid_dumpable is {state.sysctl.get('fs.suid_dumpable')}, not 2")
    pattern = state.sysctl.get("kernel.core_pattern", "")
    assert re.match(r"^\|?/", pattern), f"kernel.core_pattern {pattern}"


@control(
    "sysctl-nx",
    "The CPU enforces no-execute pages",
    rationale="Without NX, any writable memory is executable.",
    devsec="sysctl-33",
)
def test_nx(state: HostState) -> None:
    flags = state.text("cpu-flags")
    if not flags.startswith("flags"):
        not_applicable("not an x86 CPU: no-execute is part of the architecture (arm64 XN)")
    assert " nx " in f" {flags} ", "the CPU flags lack nx: the kernel cannot refuse to execute data"


@control(
    "kernel-modules-disabled",
    "Unused file systems, network protocols and storage drivers cannot be loaded",
    rationale="Rarely used kernel code is where exploitable bugs hide (cramfs, dccp, ...); "
    "USB storage and FireWire let a plugged-in device in (FireWire with DMA to memory).",
    cis="1.1.1.1-1.1.1.8, 1.1.23, 3.2.1-3.2.4",
    devsec="os-10",
)
def test_modules_disabled(state: HostState, expected: HardenSettings) -> None:
    wanted = [
        *expected.kernel.disabled_filesystems,
        *expected.kernel.disabled_protocols,
        *expected.kernel.disabled_devices,
    ]
    installs = {}  # module -> the command modprobe runs instead of loading it
    for line in state.lines("modprobe"):
        fields = line.split(maxsplit=2)
        if len(fields) == 3:
            installs[fields[1].replace("-", "_")] = fields[2].strip()
    loaded = set(state.lines("lsmod"))
    problems = []
    for module in wanted:
        name = module.replace("-", "_")
        command = installs.get(name)
        if command not in ("/bin/false", "/bin/true", "/usr/bin/false", "/usr/bin/true"):
            problems.append(f"modprobe {module} would load it (install: {command or 'none'})")
        if name in loaded:
            problems.append(f"{module} is loaded")
    assert not problems, "; ".join(problems)


NO_DEV_SUID_EXEC = frozenset({"nodev", "nosuid", "noexec"})
MOUNT_RULES = {"/tmp": NO_DEV_SUID_EXEC, "/dev/shm": NO_DEV_SUID_EXEC}
SEPARATE_MOUNT_RULES = {
    "/var/tmp": {"nodev", "nosuid", "noexec"},
    "/home": {"nodev", "nosuid"},
    "/var/log": {"nodev", "nosuid", "noexec"},
    "/boot": {"nodev", "nosuid"},
    "/run": {"nodev", "nosuid"},
}


@control(
    "fs-tmp-mounts",
    "/tmp and /dev/shm are separate mounts with nodev,nosuid,noexec",
    rationale="World-writable places must not hold device files, setuid or executables.",
    cis="1.1.2.1, 1.1.2.2",
    devsec=("os-14", "os-15", "os-16"),
)
def test_tmp_mounts(state: HostState, expected: HardenSettings) -> None:
    if not expected.kernel.harden_tmp:
        not_applicable("declared off (kernel.harden_tmp)")
    problems = []
    for path, wanted in MOUNT_RULES.items():
        mount = state.mounts.get(path)
        if mount is None:
            problems.append(f"{path} is not a separate mount")
        elif missing := wanted - set(mount.options):
            problems.append(f"{path} lacks {','.join(sorted(missing))}")
    assert not problems, "; ".join(problems)


HIDEPID = {"hidepid=invisible", "hidepid=2"}  # what harden sets, by name or number


@control(
    "fs-proc-hidepid",
    "/proc hides each user's processes from the others, now and at boot; logind and polkit "
    "still see them all",
    rationale="Another user's command line can hold a secret (a password passed as an "
    "argument): a service account taken over should not read it. logind and polkit read "
    "other users' processes, so they hold the exempt group.",
)
def test_proc_hides_processes(state: HostState, expected: HardenSettings) -> None:
    if not expected.kernel.hide_processes:
        not_applicable("declared off (kernel.hide_processes)")
    gids = {f[0]: f[2] for line in state.lines("group") if len(f := line.split(":")) >= 3}
    exempt = gids.get(PROC_GROUP)
    proc = state.mounts.get("/proc")
    options = set(proc.options) if proc else set()
    problems = []
    if not options & HIDEPID:
        problems.append("/proc shows every process to every user (no hidepid)")
    if missing := NO_DEV_SUID_EXEC - options:
        problems.append(f"/proc lacks {','.join(sorted(missing))}")
    gid = next((o.removeprefix("gid=") for o in sorted(options) if o.startswith("gid=")), None)
    if exempt is None:
        problems.append("there is no group proc")
    elif gid != exempt:
        problems.append(f"/proc exempts gid {gid or '(none)'}, not proc's {exempt}")
    if not any(HIDEPID & set(line.split()[3].split(",")) for line in state.lines("fstab-proc")
               if len(line.split()) >= 4):  # fmt: skip
        problems.append("at the next boot /proc shows every process (no hidepid in /etc/fstab)")
    for line in state.lines("proc-viewers"):
        unit, *held = line.split() or [""]
        if unit and exempt not in held:
            problems.append(f"{unit} runs without the group proc: it cannot see every process")
    assert not problems, "; ".join(problems)


@control(
    "fs-other-mounts",
    "Other separately mounted system paths carry nodev/nosuid/noexec where they can",
    rationale="dev-sec's mount lists, for the paths that are separate mounts on this host.",
    devsec=("os-14", "os-15", "os-16"),
    cis="1.1.2.3-1.1.2.7",
)
def test_other_mounts(state: HostState) -> None:
    present = {p: r for p, r in SEPARATE_MOUNT_RULES.items() if p in state.mounts}
    if not present:
        not_applicable("none of /var/tmp, /home, /var/log, /boot, /run is a separate mount")
    problems = [
        f"{path} lacks {','.join(sorted(missing))}"
        for path, wanted in present.items()
        if (missing := wanted - set(state.mounts[path].options))
    ]
    assert not problems, "; ".join(problems)


@control(
    "kernel-core-dumps",
    "Core dumps are off (limits and systemd-coredump)",
    rationale="A core dump of a process holding secrets writes them to disk.",
    cis="1.5.3",
)
def test_core_dumps(state: HostState) -> None:
    # pam_limits reads limits.conf, then limits.d/*.conf in order; for the same domain the last
    # line wins, and `*` never covers root (Debian 13 ships `root hard core infinity`).
    hard: dict[str, str] = {}
    for line in state.lines("limits"):
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "core" and fields[1] in ("hard", "-"):
            hard[fields[0]] = fields[3]
    for domain in ("*", "root"):
        assert hard.get(domain) == "0", (
            f"{domain}'s hard core limit is {hard.get(domain, 'unset (unlimited)')}"
        )
    allowed = [f"{domain} hard core {value}" for domain, value in hard.items() if value != "0"]
    assert not allowed, f"limits allow core dumps: {'; '.join(allowed)}"
    # systemd reads coredump.conf, then its drop-ins in order: the last assignment is in effect.
    settings: dict[str, str] = {}
    for line in state.lines("coredump"):
        key, sep, value = line.strip().partition("=")
        if sep:
            settings[key] = value.strip()
    storage, size = settings.get("Storage", "external"), settings.get("ProcessSizeMax", "2G")
    assert storage == "none", f"systemd-coredump stores dumps (Storage={storage})"
    assert size == "0", f"systemd-coredump keeps dumps up to ProcessSizeMax={size}"
