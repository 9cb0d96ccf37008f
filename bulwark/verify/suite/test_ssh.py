"""sshd, as it really runs: every check reads `sshd -T -C user=...` (drop-ins and Match blocks
included), for root, the deploy user and a user that does not exist. CIS numbers are CIS Debian
Linux 12 v1.1.0 section 5.1 (Ubuntu 24.04 v1.0.0 numbers them alike)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from bulwark.settings.hosts import HardenSettings
from bulwark.verify.controls import control, not_applicable
from bulwark.verify.state import UNKNOWN_USER, HostState

Want = Callable[[HardenSettings], str]

# (control, directive -> wanted value). A value of None means "whatever is declared".
PER_USER: list[tuple[pytest.MarkDecorator, dict[str, str]]] = [
    (
        control(
            "ssh-permit-root-login",
            "Root cannot log in over SSH",
            rationale="Root is the one account every scanner tries; admins log in as themselves.",
            cis="5.1.20",
            devsec="sshd-06",
        ),
        {"permitrootlogin": "no"},
    ),
    (
        control(
            "ssh-password-authentication",
            "Passwords are not accepted",
            rationale="Passwords can be guessed; keys cannot.",
            devsec="sshd-27",
        ),
        {"passwordauthentication": "no"},
    ),
    (
        control(
            "ssh-keyboard-interactive",
            "Keyboard-interactive (PAM challenge) login is off",
            rationale="It is a second path to password login through PAM.",
            devsec="sshd-29",
        ),
        {"kbdinteractiveauthentication": "no"},
    ),
    (
        control(
            "ssh-publickey-only",
            "Public key is the only authentication method",
            rationale="One strong method leaves no weaker one to fall back to.",
            devsec="sshd-22",
        ),
        {"pubkeyauthentication": "yes", "authenticationmethods": "publickey"},
    ),
    (
        control(
            "ssh-permit-empty-passwords",
            "Accounts with empty passwords cannot log in",
            rationale="An empty password is no password.",
            cis="5.1.19",
            devsec="sshd-28",
        ),
        {"permitemptypasswords": "no"},
    ),
    (
        control(
            "ssh-forwarding",
            "All forwarding, tunnels and X11 are off",
            rationale="A login must not become a pivot into the network behind the host.",
            cis="5.1.10",
            devsec=("sshd-38", "sshd-39", "sshd-40", "sshd-41", "sshd-42"),
        ),
        {
            "disableforwarding": "yes",
            "allowtcpforwarding": "no",
            "allowagentforwarding": "no",
            "allowstreamlocalforwarding": "no",
            "gatewayports": "no",
            "permittunnel": "no",
            "x11forwarding": "no",
        },
    ),
]

FIXED: list[tuple[pytest.MarkDecorator, dict[str, str]]] = [
    (
        control(
            "ssh-log-level",
            "sshd logs VERBOSE (key fingerprints of logins)",
            rationale="Audits and fail2ban need to know which key logged in and what failed.",
            cis="5.1.15",
            devsec="sshd-13",
        ),
        {"loglevel": "VERBOSE"},
    ),
    (
        control(
            "ssh-x11-use-localhost",
            "X11 forwarding, were it on, binds to localhost only",
            rationale="Defence in depth behind X11Forwarding no.",
            devsec="sshd-43",
        ),
        {"x11uselocalhost": "yes"},
    ),
    (
        control(
            "ssh-permit-user-environment",
            "Users cannot pass environment to sshd",
            rationale="LD_PRELOAD and friends through ~/.ssh/environment bypass restrictions.",
            cis="5.1.21",
            devsec="sshd-17",
        ),
        {"permituserenvironment": "no"},
    ),
    (
        control(
            "ssh-host-based-trust",
            "No host-based or rhosts trust, no user known_hosts trust",
            rationale="Trust must come from the user's key, not from where they come from.",
            cis="5.1.12, 5.1.13",
            devsec=("sshd-23", "sshd-24", "sshd-25"),
        ),
        {"hostbasedauthentication": "no", "ignorerhosts": "yes", "ignoreuserknownhosts": "yes"},
    ),
    (
        control(
            "ssh-gssapi",
            "GSSAPI authentication is off",
            rationale="Unused Kerberos/GSSAPI code is attack surface before authentication.",
            cis="5.1.11",
            devsec=("sshd-33", "sshd-34"),
        ),
        {"gssapiauthentication": "no", "gssapicleanupcredentials": "yes"},
    ),
    (
        control(
            "ssh-strict-modes",
            "sshd ignores keys in group- or world-writable places",
            rationale="Someone else able to write a user's authorized_keys owns that user.",
            devsec="sshd-11",
        ),
        {"strictmodes": "yes"},
    ),
    (
        control(
            "ssh-syslog-facility",
            "sshd logs to the AUTH facility",
            rationale="Authentication logs belong where auditors and fail2ban look.",
            devsec="sshd-12",
        ),
        {"syslogfacility": "AUTH"},
    ),
    (
        control(
            "ssh-tcp-keepalive",
            "Dead peers are found by ClientAlive, not spoofable TCP keepalives",
            rationale="TCP keepalives are outside the encrypted channel.",
            devsec="sshd-35",
        ),
        {"tcpkeepalive": "no"},
    ),
    (
        control(
            "ssh-compression",
            "No compression",
            rationale="It serves no shell, and compressed traffic has leaked secrets "
            "(CRIME-style attacks); Lynis's SSH profile asks for it off.",
        ),
        {"compression": "no"},
    ),
    (
        control(
            "ssh-login-messages",
            "No motd or last-login message from sshd",
            rationale="They tell an attacker about the host and its users.",
            devsec=("sshd-44", "sshd-45"),
        ),
        {"printmotd": "no", "printlastlog": "no"},
    ),
    (
        control(
            "ssh-use-pam",
            "sshd uses PAM (account and session policies apply)",
            rationale="Account expiry, limits and session logging come from PAM.",
            cis="5.1.22",
        ),
        {"usepam": "yes"},
    ),
]


def _mismatches(state: HostState, wanted: dict[str, str], users: list[str]) -> list[str]:
    problems = []
    for user in users:
        for key, value in wanted.items():
            actual = state.sshd_value(key, user)
            if actual.lower() != value.lower():
                problems.append(f"user={user}: sshd -T {key} {actual} (want {value})")
    return problems


@pytest.mark.parametrize("wanted", [pytest.param(w, marks=m, id=m.args[0]) for m, w in PER_USER])
def test_sshd_per_user(state: HostState, wanted: dict[str, str]) -> None:
    problems = _mismatches(state, wanted, state.sshd_contexts)
    assert not problems, "; ".join(problems)


@pytest.mark.parametrize("wanted", [pytest.param(w, marks=m, id=m.args[0]) for m, w in FIXED])
def test_sshd_fixed(state: HostState, wanted: dict[str, str]) -> None:
    problems = _mismatches(state, wanted, [state.deploy_user])
    assert not problems, "; ".join(problems)


@control(
    "ssh-kerberos",
    "Kerberos password authentication is off",
    rationale="Kerberos passwords are still passwords; with it off, KerberosOrLocalPasswd and "
    "KerberosTicketCleanup have nothing to act on.",
    devsec=("sshd-30", "sshd-31", "sshd-32"),
)
def test_kerberos(state: HostState) -> None:
    if "kerberosauthentication" not in state.sshd():
        not_applicable("this sshd is built without Kerberos support")
    value = state.sshd_value("kerberosauthentication")
    assert value == "no", f"sshd -T kerberosauthentication {value}"


@control(
    "ssh-allow-users",
    "Only the declared users and groups may log in",
    rationale="An account created later (by a package or by mistake) must not be reachable.",
    cis="5.1.7",
)
def test_allow_users(state: HostState, expected: HardenSettings) -> None:
    allowed = state.sshd().get("allowusers", [])
    assert sorted(allowed) == sorted(expected.allowed_users), (
        f"sshd -T allowusers {allowed or '(unset: everyone)'}; declared "
        f"{list(expected.allowed_users)}"
    )
    groups = state.sshd().get("allowgroups", [])
    assert sorted(groups) == sorted(expected.ssh.allow_groups), (
        f"sshd -T allowgroups {groups}; declared {list(expected.ssh.allow_groups)}"
    )
    unknown = state.sshd_value("permitrootlogin", UNKNOWN_USER)
    assert unknown != "(unset)", f"sshd -T for {UNKNOWN_USER} printed nothing"


@control(
    "ssh-limits",
    "Authentication tries, grace time, sessions and startups are bounded as declared",
    rationale="Bounds slow guessing and keep unauthenticated connections from piling up.",
    cis="5.1.14, 5.1.16, 5.1.17, 5.1.18",
    devsec=("sshd-18", "sshd-19", "sshd-20", "sshd-21"),
)
def test_limits(state: HostState, expected: HardenSettings) -> None:
    ssh = expected.ssh
    wanted = {
        "maxauthtries": str(ssh.max_auth_tries),
        "logingracetime": str(ssh.login_grace_time),
        "maxsessions": str(ssh.max_sessions),
        "maxstartups": ssh.max_startups,
    }
    problems = _mismatches(state, wanted, [state.deploy_user])
    tries = state.sshd_value("maxauthtries")
    if tries.isdigit() and int(tries) > 4:
        problems.append(f"maxauthtries {tries} exceeds CIS's 4")
    assert not problems, "; ".join(problems)


@control(
    "ssh-client-alive",
    "Idle sessions are probed and dropped",
    rationale="A forgotten session is an open door; ClientAlive closes it.",
    cis="5.1.9",
    devsec=("sshd-36", "sshd-37"),
)
def test_client_alive(state: HostState, expected: HardenSettings) -> None:
    wanted = {
        "clientaliveinterval": str(expected.ssh.client_alive_interval),
        "clientalivecountmax": str(expected.ssh.client_alive_count_max),
    }
    problems = _mismatches(state, wanted, [state.deploy_user])
    if state.sshd_value("clientaliveinterval") == "0":
        problems.append("clientaliveinterval 0 never probes")
    assert not problems, "; ".join(problems)


@control(
    "ssh-banner",
    "The pre-login banner is the declared one (or none)",
    rationale="A legal notice where required; no version or host details otherwise.",
    cis="5.1.8",
    devsec=("sshd-46", "sshd-47"),
)
def test_banner(state: HostState, expected: HardenSettings) -> None:
    banner = state.sshd_value("banner")
    wanted = "/etc/issue.net" if expected.ssh.banner else "none"
    assert banner == wanted, f"sshd -T banner {banner} (want {wanted})"
    debian_banner = state.sshd().get("debianbanner")
    if debian_banner is not None:
        assert debian_banner == ["no"], f"sshd -T debianbanner {debian_banner[0]} (want no)"


@control(
    "ssh-port",
    "sshd listens on the declared port",
    rationale="The firewall, fail2ban and the inventory must all agree on one port.",
    devsec=("sshd-07", "sshd-08", "sshd-09"),
)
def test_port(state: HostState, expected: HardenSettings) -> None:
    ports = state.sshd().get("port", [])
    assert ports == [str(expected.ssh.port)], f"sshd -T port {ports} (want {expected.ssh.port})"

    # What the kernel says sshd listens on, not what it was told; with socket activation
    # (Ubuntu >= 22.10) systemd holds the listening socket until a client comes.
    def ports_of(program: str) -> list[str]:
        return sorted(
            {
                line.split()[4].rpartition(":")[2]
                for line in state.lines("listen")
                if line.startswith("tcp") and f'users:(("{program}"' in line
            }
        )

    listening = ports_of("sshd")
    if not listening and str(expected.ssh.port) in ports_of("systemd"):
        listening = [str(expected.ssh.port)]
    assert listening == [str(expected.ssh.port)], (
        f"sshd listens on port {', '.join(listening) or 'none'} (want {expected.ssh.port})"
    )


# Allow-lists, not deny-lists: an algorithm nobody reviewed is not accepted by default.
STRONG_CIPHERS = {
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
}
STRONG_KEX = {
    "mlkem768x25519-sha256",
    "sntrup761x25519-sha512",
    "sntrup761x25519-sha512@openssh.com",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
}
STRONG_MACS = {
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256-etm@openssh.com",
    "umac-128-etm@openssh.com",
}
STRONG_HOSTKEY_ALGS = {
    "ssh-ed25519",
    "ssh-ed25519-cert-v01@openssh.com",
    "sk-ssh-ed25519@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-512-cert-v01@openssh.com",
    "rsa-sha2-256",
    "rsa-sha2-256-cert-v01@openssh.com",
}
CRYPTO = [
    (
        control(
            "ssh-ciphers",
            "Only AEAD and CTR ciphers",
            rationale="CBC modes and RC4/3DES are broken or weak.",
            cis="5.1.4",
            devsec="sshd-01",
        ),
        "ciphers",
        STRONG_CIPHERS,
    ),
    (
        control(
            "ssh-kex",
            "Only curve25519, post-quantum hybrids and large DH groups for key exchange",
            rationale="SHA-1 and NIST-curve exchanges are weak or distrusted.",
            cis="5.1.5",
            devsec="sshd-02",
        ),
        "kexalgorithms",
        STRONG_KEX,
    ),
    (
        control(
            "ssh-macs",
            "Only encrypt-then-MAC MACs",
            rationale="MAC-then-encrypt modes leak through timing; SHA-1 and MD5 MACs are weak.",
            cis="5.1.6",
            devsec="sshd-03",
        ),
        "macs",
        STRONG_MACS,
    ),
    (
        control(
            "ssh-host-key-algorithms",
            "Only ed25519 and RSA-SHA2 host key signatures",
            rationale="ssh-rsa signs with SHA-1; DSA and NIST ECDSA are weak or distrusted.",
            devsec="sshd-14",
        ),
        "hostkeyalgorithms",
        STRONG_HOSTKEY_ALGS,
    ),
]


@pytest.mark.parametrize(
    ("key", "strong"), [pytest.param(k, s, marks=m, id=m.args[0]) for m, k, s in CRYPTO]
)
def test_crypto(state: HostState, key: str, strong: set[str]) -> None:
    offered = ",".join(state.sshd().get(key, [])).split(",")
    weak = [alg for alg in offered if alg and alg not in strong]
    assert offered != [""], f"sshd -T prints no {key}"
    assert not weak, f"sshd -T {key} offers {','.join(weak)}"


@control(
    "ssh-host-keys",
    "Host keys are ed25519 or RSA of at least 3072 bits, and all exist",
    rationale="Short RSA and ECDSA/DSA keys are weak; a missing key file breaks logins.",
    cis="5.1.2",
    devsec="sshd-14",
)
def test_host_keys(state: HostState) -> None:
    problems = []
    for line in state.lines("hostkeys"):
        fields = line.split()
        if fields[0] == "missing":
            problems.append(f"{fields[1]} is configured but missing")
            continue
        bits, kind = int(fields[0]), fields[-1].strip("()")
        if kind not in ("ED25519", "RSA") or (kind == "RSA" and bits < 3072):
            problems.append(f"{kind} {bits} bits")
    assert state.lines("hostkeys"), "sshd -T lists no host keys"
    assert not problems, "; ".join(problems)


@control(
    "ssh-moduli",
    "Diffie-Hellman group-exchange moduli are at least 3072 bits",
    rationale="Small DH groups are within reach of precomputation (Logjam).",
    devsec="sshd-48",
)
def test_moduli(state: HostState) -> None:
    smallest = state.text("moduli").strip()
    if not smallest:
        not_applicable("/etc/ssh/moduli is empty or absent: sshd uses its built-in groups")
    assert int(smallest) >= 3071, f"/etc/ssh/moduli has a {int(smallest) + 1}-bit modulus"


@control(
    "ssh-config-files",
    "/etc/ssh is root's and sshd_config is readable by root only",
    rationale="Whoever can write sshd's config owns every login.",
    cis="5.1.1",
    devsec=("sshd-04", "sshd-05"),
)
def test_config_files(state: HostState) -> None:
    stats = state.stats
    wanted = {"/etc/ssh": ("755", "root", "root"), "/etc/ssh/sshd_config": ("600", "root", "root")}
    problems = [
        f"{path} {' '.join(stats[path][:3]) if path in stats else 'missing'} "
        f"(want {' '.join(want)})"
        for path, want in wanted.items()
        if path not in stats or stats[path][:3] != want
    ]
    assert not problems, "; ".join(problems)


@control(
    "ssh-no-crypto-override",
    "sshd's command line does not override its configured algorithms",
    rationale="A -oCiphers on the command line silently beats the config that audits read.",
    devsec="sshd-49",
)
def test_no_crypto_override(state: HostState) -> None:
    procs = [line for line in state.lines("sshd-procs") if line.strip()]
    assert procs, "no sshd process is running"
    overrides = [p for p in procs if "-oCiphers" in p or "-oKex" in p or "-oHostKey" in p]
    assert not overrides, f"sshd runs as: {overrides[0]}"


@control(
    "ssh-modern-openssh",
    "OpenSSH is recent enough that protocol 1, UseLogin and unprivileged sshd are gone",
    rationale="OpenSSH >= 7.5 removed protocol 1, UseLogin and the no-privsep mode for good.",
    devsec=("sshd-10", "sshd-15", "sshd-16"),
)
def test_modern_openssh(state: HostState) -> None:
    text = state.text("openssh")
    # "OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL ..." or, from sshd's usage, "OpenSSH_9.2, ..."
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", text)
    assert found, f"sshd's version could not be read: {text.strip() or 'no output'}"
    assert (int(found[1]), int(found[2])) >= (7, 5), f"sshd is {text.strip()}"
