"""Hostile and careless input, command by command, through the CLI's own entry point: every case
ends in exactly one `error:` line and exit 2, with no traceback, no connection opened, no
program started and no file written. (The property tests in test_endpoints.py cover arbitrary
strings; this table covers what people and scripts actually type.)"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import psutil
import psycopg
import pytest

from bulwark.cli import run
from bulwark.hosts.keys import ensure_key
from bulwark.verify.results import SCHEMA
from tests.lines import said

REPO = Path(__file__).parents[2]
HOSTNAME = socket.gethostname()
OWN_ADDRESS = next(
    entry.address
    for entries in psutil.net_if_addrs().values()
    for entry in entries
    if entry.family == socket.AF_INET and not entry.address.startswith("127.")
)
REMOTE = "203.0.113.9"  # TEST-NET-3: never contacted, the checks come first


class Contacted(BaseException):
    """A hostile case got as far as opening a connection or starting a program."""


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    message: str  # a regex the one error line must match
    code: int = 2


def inventory(data: str, name: str = "'web1'") -> str:
    return f"web = [({name}, {data})]\n"


GOOD_HOST = (
    f"'ssh_hostname': '{REMOTE}', 'ssh_user': 'deploy', 'ssh_key': '{{keys}}/good', "
    "'ssh_known_hosts_file': '{trust}/known_hosts'"
)
INVENTORIES = {
    "name_error.py": "web = [('web1', {'ssh_hostname': undefined_name})]\n",
    "import_error.py": "import bulwark_no_such_module\n",
    "syntax_error.py": "web = [('web1', {)]\n",
    "exits.py": "raise SystemExit(0)\n",
    "port_text.py": inventory("{'ssh_port': 'abc'}"),
    "port_big.py": inventory("{'ssh_port': 70000}"),
    "host_newline.py": inventory("{'ssh_hostname': 'h\\n  ProxyCommand touch /tmp/x'}"),
    "user_newline.py": inventory("{'ssh_user': 'deploy\\n  ProxyCommand touch /tmp/x'}"),
    "local.py": inventory("{}", name="'@local'"),
    "name_newline.py": inventory("{'ssh_hostname': '203.0.113.9'}", name="'web1\\n'"),
    "empty.py": "web = []\n",
    "self_name.py": inventory(f"{{{GOOD_HOST.replace(REMOTE, HOSTNAME)}, 'ssh_port': 2222}}"),
    "self_address.py": inventory(f"{{{GOOD_HOST.replace(REMOTE, OWN_ADDRESS)}}}"),
    "self_shorthand.py": inventory(f"{{{GOOD_HOST.replace(REMOTE, '127.1')}}}"),
    "open_key.py": inventory(f"{{{GOOD_HOST.replace('/good', '/open')}}}"),
    "no_known_hosts.py": inventory(
        f"{{'ssh_hostname': '{REMOTE}', 'ssh_user': 'deploy', 'ssh_key': '{{keys}}/good'}}"
    ),
    "proofs_list.py": inventory(f"{{{GOOD_HOST.replace('{trust}', '{trust}/list')}}}"),
    "proofs_fields.py": inventory(f"{{{GOOD_HOST.replace('{trust}', '{trust}/fields')}}}"),
    "missing_key.py": inventory(f"{{{GOOD_HOST.replace('/good', '/missing')}}}"),
    "good.py": inventory(f"{{{GOOD_HOST}}}"),
    "proved.py": inventory(f"{{{GOOD_HOST.replace('{trust}', '{trust}/proved')}}}"),
    # Settings and connection data that must stop at the inventory, however they are written.
    "module_injection.py": inventory(
        "{" + GOOD_HOST + ", 'bulwark': {'kernel': {'disabled_filesystems': "
        "['cramfs\\ninstall ext4 /bin/sh -c id']}}}"
    ),
    "banner_cr.py": inventory("{" + GOOD_HOST + ", 'bulwark': {'ssh': {'banner': 'Hi\\rEvil'}}}"),
    "bantime_backtrack.py": inventory(
        "{" + GOOD_HOST + ", 'bulwark': {'fail2ban': {'bantime': '" + "1" * 40 + "!'}}}"
    ),
    "port_true.py": inventory("{" + GOOD_HOST + ", 'bulwark': {'ssh': {'port': True}}}"),
    "interval_huge.py": inventory(
        "{" + GOOD_HOST + ", 'bulwark': {'ssh': {'client_alive_interval': 10**30}}}"
    ),
    "ssh_config_file.py": inventory("{" + GOOD_HOST + ", 'ssh_config_file': '/tmp/evil'}"),
    "ssh_password.py": inventory("{" + GOOD_HOST + ", 'ssh_password': 'hunter2'}"),
    "paramiko_kwargs.py": inventory(
        "{" + GOOD_HOST + ", 'ssh_paramiko_connect_kwargs': {'allow_agent': True}}"
    ),
    "forward_agent.py": inventory("{" + GOOD_HOST + ", 'ssh_forward_agent': True}"),
    "source_zone.py": inventory(
        "{" + GOOD_HOST + ", 'bulwark': {'firewall': {'allow': [{'port': 443, 'sources': "
        "['fe80::%x;touch pwned;/64']}]}}}"
    ),
    "ignoreip_interpolation.py": inventory(
        "{" + GOOD_HOST + ", 'bulwark': {'fail2ban': {'ignoreip': "
        "['fe80::1%(maxretry)s 0.0.0.0/0']}}}"
    ),
    "same_host_twice.py": f"web = [('web1', {{{GOOD_HOST}}}), ('web2', {{{GOOD_HOST}}})]\n",
}
LONG = "a" * 300  # longer than a Linux file name may be

CASES = [
    # ------------------------------------------------------------------ bootstrap
    Case("bootstrap-host-newline", ("bootstrap", "h\n  ProxyCommand touch /tmp/x", "--password-env", "PW"), r"^error: host: .*whitespace or a control character"),
    Case("bootstrap-host-option", ("bootstrap", "-oProxyCommand=touch", "--password-env", "PW"), r"No such option|not a valid DNS name|Missing argument 'HOST'"),
    Case("bootstrap-127.1", ("bootstrap", "127.1", "--password-env", "PW"), r"write it as 127\.0\.0\.1"),
    Case("bootstrap-decimal", ("bootstrap", "2130706433", "--password-env", "PW"), r"write it as 127\.0\.0\.1"),
    Case("bootstrap-hex", ("bootstrap", "0x7f000001", "--password-env", "PW"), r"write it as 127\.0\.0\.1"),
    Case("bootstrap-unspecified-v4", ("bootstrap", "0.0.0.0", "--password-env", "PW"), r"this machine"),
    Case("bootstrap-unspecified-v6", ("bootstrap", "::", "--password-env", "PW"), r"this machine"),
    Case("bootstrap-mapped-loopback", ("bootstrap", "::ffff:127.0.0.1", "--password-env", "PW"), r"this machine"),
    Case("bootstrap-LOCALHOST", ("bootstrap", "LOCALHOST", "--password-env", "PW"), r"this machine"),
    Case("bootstrap-hostname-upper", ("bootstrap", HOSTNAME.upper(), "--password-env", "PW"), r"this machine"),
    Case("bootstrap-own-address", ("bootstrap", OWN_ADDRESS, "--password-env", "PW"), r"this machine"),
    Case("bootstrap-localhost6", ("bootstrap", "localhost6", "--password-env", "PW"), r"this machine|cannot resolve"),
    Case("bootstrap-empty-label", ("bootstrap", "a..example", "--password-env", "PW"), r"not a valid DNS name"),
    Case("bootstrap-long-label", ("bootstrap", "a" * 64 + ".example", "--password-env", "PW"), r"not a valid DNS name"),
    Case("bootstrap-idna-joiner", ("bootstrap", "a\u200db.example", "--password-env", "PW"), r"not a valid DNS name"),
    Case("bootstrap-bracket-name", ("bootstrap", "[web1]", "--password-env", "PW"), r"brackets hold an IPv6"),
    Case("bootstrap-port-0", ("bootstrap", REMOTE, "--port", "0", "--password-env", "PW"), r"--port: 0 is not a port"),
    Case("bootstrap-port-big", ("bootstrap", REMOTE, "--port", "65536", "--password-env", "PW"), r"--port: 65536 is not a port"),
    Case("bootstrap-port-text", ("bootstrap", REMOTE, "--port", "abc", "--password-env", "PW"), r"Invalid value for '--port'"),
    Case("bootstrap-user-option", ("bootstrap", REMOTE, "--user=-oProxyCommand=x", "--password-env", "PW"), r"--user: invalid user name"),
    Case("bootstrap-user-newline", ("bootstrap", REMOTE, "--user", "admin\n", "--password-env", "PW"), r"--user: invalid user name"),
    Case("bootstrap-deploy-user-newline", ("bootstrap", REMOTE, "--deploy-user", "deploy\n", "--password-env", "PW"), r"deploy_user\.name: invalid user name"),
    Case("bootstrap-deploy-user-root", ("bootstrap", REMOTE, "--deploy-user", "root", "--password-env", "PW"), r"system account"),
    Case("bootstrap-key-missing", ("bootstrap", REMOTE, "--key", "{keys}/missing"), r"does not exist"),
    Case("bootstrap-key-open", ("bootstrap", REMOTE, "--key", "{keys}/open"), r"accessible by others \(mode 0644\)"),
    Case("bootstrap-key-dir", ("bootstrap", REMOTE, "--key", "{keys}/dir"), r"is a directory"),
    Case("bootstrap-key-garbage", ("bootstrap", REMOTE, "--key", "{keys}/garbage"), r"not an OpenSSH private key"),
    Case("bootstrap-deploy-key-rsa2048", ("bootstrap", REMOTE, "--deploy-key", "{keys}/rsa", "--password-env", "PW"), r"--deploy-key .* 2048-bit RSA key"),
    Case("bootstrap-deploy-key-newline", ("bootstrap", REMOTE, "--deploy-key", "{keys}/new\nline", "--password-env", "PW"), r"control character"),
    Case("bootstrap-no-terminal-no-yes", ("bootstrap", REMOTE, "--password-env", "PW", "--trust-dir", "{trust}"), r"^error: bootstrap changes hosts and there is no terminal to ask on: pass --yes"),
    Case("bootstrap-trust-dir-file", ("bootstrap", REMOTE, "--trust-dir", "{keys}/good", "--password-env", "PW"), r"--trust-dir .* is a file"),
    Case("bootstrap-key-fifo", ("bootstrap", REMOTE, "--key", "{keys}/fifo"), r"key file .*fifo is not a regular file"),
    Case("bootstrap-password-newline", ("bootstrap", REMOTE, "--password-env", "PWNL"), r"--password-env PWNL: the password holds a line break"),
    Case("bootstrap-trust-dir-too-long", ("bootstrap", REMOTE, "--trust-dir", "{tmp}/" + LONG, "--password-env", "PW"), r"longer than Linux allows|File name too long"),
    Case("bootstrap-password-env-unset", ("bootstrap", REMOTE, "--password-env", "BULWARK_UNSET"), r"that variable is not set"),
    Case("bootstrap-ask-password-no-tty", ("bootstrap", REMOTE, "--ask-password"), r"needs a terminal"),
    Case("bootstrap-no-credential", ("bootstrap", REMOTE), r"no first-contact credential"),
    Case("bootstrap-unknown-option", ("bootstrap", REMOTE, "--bogus"), r"No such option: --bogus"),
    Case("bootstrap-proofs-wrong-shape", ("bootstrap", REMOTE, "--trust-dir", "{trust}/list", "--password-env", "PW"), r"access-proofs\.json: the file: use a valid dictionary"),
    # ------------------------------------------------------------------ harden
    Case("harden-missing-inventory", ("harden", "{inv}/nosuch.py"), r"does not exist"),
    Case("harden-name-error", ("harden", "{inv}/name_error.py"), r"name_error\.py:1: inventory could not be loaded \(NameError"),
    Case("harden-import-error", ("harden", "{inv}/import_error.py"), r"import_error\.py:1: .*ModuleNotFoundError"),
    Case("harden-syntax-error", ("harden", "{inv}/syntax_error.py"), r"syntax_error\.py:1: .*SyntaxError"),
    Case("harden-system-exit", ("harden", "{inv}/exits.py"), r"exits\.py:1: inventory could not be loaded \(SystemExit"),
    Case("harden-port-text", ("harden", "{inv}/port_text.py"), r"^error: web1: ssh_port: 'abc' is not a port"),
    Case("harden-port-big", ("harden", "{inv}/port_big.py"), r"web1: ssh_port: 70000 is not a port"),
    Case("harden-hostname-newline", ("harden", "{inv}/host_newline.py"), r"web1: ssh_hostname: .*control character"),
    Case("harden-user-newline", ("harden", "{inv}/user_newline.py"), r"web1: ssh_user: invalid user name"),
    Case("harden-local-connector", ("harden", "{inv}/local.py"), r"@local is a pyinfra connector"),
    Case("harden-name-newline", ("harden", "{inv}/name_newline.py"), r"inventory: invalid host name 'web1\\n'"),
    Case("harden-no-hosts", ("harden", "{inv}/empty.py"), r"has no hosts"),
    Case("harden-limit-nothing", ("harden", "{inv}/good.py", "--limit", "db9"), r"matches --limit db9"),
    Case("harden-limit-option", ("harden", "{inv}/good.py", "--limit=-y"), r"--limit: '-y' is not a host or group name"),
    Case("harden-self-by-name", ("harden", "{inv}/self_name.py"), rf"{re.escape(HOSTNAME)}:2222 resolves to .* this machine"),
    Case("harden-self-by-address", ("harden", "{inv}/self_address.py"), r"this machine"),
    Case("harden-self-shorthand", ("harden", "{inv}/self_shorthand.py"), r"write it as 127\.0\.0\.1"),
    Case("harden-open-key", ("harden", "{inv}/open_key.py"), r"accessible by others"),
    Case("harden-no-terminal-no-yes", ("harden", "{inv}/proved.py"), r"^error: harden changes hosts and there is no terminal to ask on: pass --yes to apply \(or --dry to preview\)$"),
    Case("harden-unpinned", ("harden", "{inv}/no_known_hosts.py"), r"ssh_known_hosts_file is not set"),
    Case("harden-proofs-list", ("harden", "{inv}/proofs_list.py"), r"access-proofs\.json: the file: use a valid dictionary"),
    Case("harden-module-injection", ("harden", "{inv}/module_injection.py"), r"^error: web1: bulwark\.kernel\.disabled_filesystems\[0\]: invalid kernel module name"),
    Case("harden-banner-carriage-return", ("harden", "{inv}/banner_cr.py"), r"bulwark\.ssh\.banner: holds a control character"),
    Case("harden-bantime-backtracking", ("harden", "{inv}/bantime_backtrack.py"), r"bulwark\.fail2ban\.bantime: invalid duration"),
    Case("harden-port-true", ("harden", "{inv}/port_true.py"), r"bulwark\.ssh\.port: True is not a number"),
    Case("harden-interval-huge", ("harden", "{inv}/interval_huge.py"), r"bulwark\.ssh\.client_alive_interval: .*86400"),
    Case("harden-ssh-config-file", ("harden", "{inv}/ssh_config_file.py"), r"^error: web1: ssh_config_file is not supported: "),
    Case("harden-ssh-password", ("harden", "{inv}/ssh_password.py"), r"^error: web1: ssh_password is not supported: "),
    Case("harden-paramiko-kwargs", ("harden", "{inv}/paramiko_kwargs.py"), r"^error: web1: ssh_paramiko_connect_kwargs is not supported: "),
    Case("harden-forward-agent", ("harden", "{inv}/forward_agent.py"), r"^error: web1: ssh_forward_agent is not supported: "),
    Case("harden-firewall-source-zone", ("harden", "{inv}/source_zone.py"), r"bulwark\.firewall\.allow\[0\]\.sources: .* is not an IP address or CIDR range: .*no %zone"),
    Case("harden-ignoreip-interpolation", ("harden", "{inv}/ignoreip_interpolation.py"), r"bulwark\.fail2ban\.ignoreip\[0\]: .* is not an IP address or CIDR range"),
    Case("harden-same-host-twice", ("harden", "{inv}/same_host_twice.py"), r"^error: web2: 203\.0\.113\.9 is also host web1"),
    Case("harden-path-too-long", ("harden", "{tmp}/" + LONG + ".py"), r"File name too long: check the path"),
    Case("harden-proofs-fields", ("harden", "{inv}/proofs_fields.py"), r"access-proofs\.json: 203\.0\.113\.9\.port: missing"),
    # ------------------------------------------------------------------ verify
    Case("verify-proxycommand-injection", ("verify", "x\n  ProxyCommand touch /tmp/pwned\n  #@host"), r"target .*invalid user name"),
    Case("verify-host-option", ("verify", "x@-oProxyCommand=touch"), r"not a valid DNS name"),
    Case("verify-port-99999", ("verify", f"deploy@{REMOTE}:99999"), r"99999 is not a port"),
    Case("verify-port-superscript", ("verify", f"deploy@{REMOTE}:²"), r"'²' is not a port"),
    Case("verify-ipv6-needs-known-hosts", ("verify", "deploy@[2001:db8::1]:22", "--known-hosts", "{trust}/nosuch"), r"2001:db8::1: known_hosts .*nosuch does not exist"),
    Case("verify-known-hosts-missing", ("verify", f"deploy@{REMOTE}", "--known-hosts", "{trust}/nosuch"), r"known_hosts .* does not exist"),
    Case("verify-key-open", ("verify", f"deploy@{REMOTE}", "--key", "{keys}/open"), r"accessible by others"),
    Case("verify-out-missing-folder", ("verify", f"deploy@{REMOTE}", "--json", "--out", "{tmp}/nosuch/r.json"), r"--out .*folder .* does not exist"),
    Case("verify-format-unknown", ("verify", f"deploy@{REMOTE}", "--format", "yaml"), r"--format: .*yaml"),
    Case("harden-format-unknown", ("harden", "{keys}/good", "--format", "sarif"), r"--format: .*sarif"),
    Case("audit-json-and-format", ("audit", "--json", "--format", "md"), r"--json .*--format"),
    Case("verify-junit-directory", ("verify", f"deploy@{REMOTE}", "--junit", "{keys}/dir"), r"--junit .* is a directory"),
    Case("verify-bad-selection", ("verify", f"deploy@{REMOTE}", "--known-hosts", "{trust}/known_hosts", "-k", "ssh and ("), r"-k 'ssh and \(' is not a selection"),
    Case("verify-shorthand-loopback", ("verify", "deploy@127.1"), r"write it as 127\.0\.0\.1"),
    Case("verify-this-machine", ("verify", "deploy@localhost:2222", "--known-hosts", "{trust}/known_hosts"), r"localhost:2222 resolves to .* this machine"),
    Case("verify-inventory-missing-key", ("verify", "{inv}/missing_key.py"), r"key file .*missing does not exist"),
    Case("verify-probe-key-missing", ("verify", f"deploy@{REMOTE}", "--known-hosts", "{trust}/known_hosts", "--probe-key", "{keys}/missing"), r"missing does not exist"),
    # ------------------------------------------------------------------ plan
    Case("plan-stack-traversal", ("plan", "--stack", "../../etc/passwd", "--stacks-dir", "{stacks}"), r"is not a stack name"),
    Case("plan-stack-newline", ("plan", "--stack", "dev\n", "--stacks-dir", "{stacks}"), r"'dev\\n' is not a stack name"),
    Case("plan-stack-empty", ("plan", "--stack", "", "--stacks-dir", "{stacks}"), r"'' is not a stack name"),
    Case("plan-stack-unknown", ("plan", "--stack", "qa", "--stacks-dir", "{stacks}"), r"no such stack file"),
    Case("plan-yaml-error", ("plan", "--stack", "dev", "--stacks-dir", "{tmp}/stacks-bad"), r"Pulumi\.dev\.yaml:3:1: found character '\\t' that cannot start any token: fix the YAML there"),
    Case("plan-stack-file-is-a-directory", ("plan", "--stack", "dev", "--stacks-dir", "{tmp}/stacks-dir"), r"is a directory"),
    Case("plan-key-set-twice", ("plan", "--stack", "dev", "--stacks-dir", "{tmp}/stacks-twice"), r"Pulumi\.dev\.yaml:\d+:3: 'bulwark:environment' is set twice in this mapping: fix the YAML there"),
    Case("plan-port-yes", ("plan", "--stack", "dev", "--stacks-dir", "{tmp}/stacks-port"), r"bulwark:service\.port: True is not a number"),
    Case("plan-env-name", ("plan", "--stack", "dev", "--stacks-dir", "{tmp}/stacks-env"), r"env: 'BAD NAME' is not an environment variable name"),
    Case("plan-stacks-dir-too-long", ("plan", "--stack", "dev", "--stacks-dir", "{tmp}/" + LONG), r"File name too long|longer than Linux allows"),
    # ------------------------------------------------------------------ audit
    Case("audit-out-missing-folder", ("audit", "--stack", "dev", "--stacks-dir", "{stacks}", "-o", "{tmp}/nosuch/a.md"), r"--out .* folder .* does not exist"),
    Case("audit-format", ("audit", "--stack", "dev", "--format", "pdf"), r"--format: 'pdf' is not a format"),
    Case("audit-hosts-missing", ("audit", "--hosts", "{tmp}/nosuch.json"), r"no such file"),
    Case("audit-hosts-shape", ("audit", "--hosts", "{results}/shape.json"), r"--hosts .*shape\.json: hosts\[0\]\.host: missing"),
    Case("audit-hosts-empty", ("audit", "--hosts", "{results}/empty.json"), r"no host or no control proves nothing"),
    Case("audit-hosts-directory", ("audit", "--hosts", "{keys}/dir"), r"is a directory"),
    Case("audit-hosts-bad-json", ("audit", "--hosts", "{keys}/garbage"), r"garbage:1:1: Expecting value"),
    Case("audit-policies-missing", ("audit", "--stack", "dev", "--stacks-dir", "{stacks}", "--policies-dir", "{tmp}/nosuch"), r"--policies-dir .* is not a folder"),
    Case("audit-waivers-yaml", ("audit", "--stack", "dev", "--stacks-dir", "{stacks}", "--policies-dir", "{tmp}/policies-bad"), r"waivers\.yaml:2:1: found character .* fix the YAML there"),
    Case("audit-waiver-unknown-rule", ("audit", "--stack", "dev", "--stacks-dir", "{stacks}", "--policies-dir", "{tmp}/policies-rule"), r"bulwark audit --list-rules"),
    Case("audit-waiver-unix-time", ("audit", "--stack", "dev", "--stacks-dir", "{stacks}", "--policies-dir", "{tmp}/policies-epoch"), r"waivers\.yaml: waivers\[0\]\.expires: not a date: use YYYY-MM-DD"),
    Case("audit-waiver-stack-no", ("audit", "--stack", "dev", "--stacks-dir", "{stacks}", "--policies-dir", "{tmp}/policies-no"), r"waivers\[0\]\.stack: False is YAML's reading of yes/no/true/false: quote the text"),
    Case("audit-nothing", ("audit",), r"nothing to audit"),
    # ------------------------------------------------------------------ pooler
    Case("pooler-empty-dsn", ("pooler", "check", ""), r"DSN: no host"),
    Case("pooler-password-in-dsn", ("pooler", "check", "host=db password=hunter2"), r"it holds a password"),
    Case("pooler-sslpassword-in-dsn", ("pooler", "check", "host=db sslpassword=hunter2"), r"it holds sslpassword"),
    Case("pooler-unparsable-dsn", ("pooler", "check", "host='db"), r"libpq cannot parse it"),
    Case("pooler-clients-0", ("pooler", "check", "host=db", "--clients", "0"), r"--clients 0"),
    Case("pooler-threshold-superscript", ("pooler", "check", "host=db", "--prepare-threshold", "²"), r"--prepare-threshold '²'"),
    Case("pooler-results-missing-folder", ("pooler", "check", "host=db", "--results", "{tmp}/nosuch/r.json"), r"--results .* does not exist"),
    # ------------------------------------------------------------------ lab
    Case("lab-up-forward-0", ("lab", "up", "--forward", "0"), r"forwarded port 0 is invalid"),
    Case("lab-up-forward-22", ("lab", "up", "--forward", "22"), r"forwarded port 22 is invalid"),
    Case("lab-up-memory", ("lab", "up", "--memory", "-5"), r"--memory -5 is invalid"),
    Case("lab-up-cpus", ("lab", "up", "--cpus", "0"), r"--cpus 0 is invalid"),
    Case("lab-up-name-space", ("lab", "up", "--name", "Bad Name"), r"lab VM name 'Bad Name' is invalid"),
    Case("lab-up-name-newline", ("lab", "up", "--name", "x\n"), r"lab VM name 'x\\n' is invalid"),
    Case("lab-up-distro", ("lab", "up", "--distro", "sid"), r"unknown lab distro 'sid'"),
    Case("lab-down-nothing", ("lab", "down"), r"name the VMs to stop"),
    Case("lab-down-unknown", ("lab", "down", "nosuch"), r"no running lab VM named 'nosuch'"),
    Case("lab-ssh-user-option", ("lab", "ssh", "vm1", "--user=-oProxyCommand=x"), r"--user: invalid user name"),
    Case("lab-ssh-unknown", ("lab", "ssh", "nosuch"), r"no running lab VM named 'nosuch'"),
    Case("lab-unknown-command", ("lab", "reboot"), r"No such command 'reboot'"),
    # ------------------------------------------------------------------ settings, demo
    Case("settings-unknown-option", ("settings", "--bogus"), r"No such option: --bogus"),
    Case("settings-extra-argument", ("settings", "extra"), r"unexpected extra argument"),
    Case("demo-distro", ("demo", "--distro", "sid"), r"unknown lab distro 'sid'"),
    Case("demo-auth", ("demo", "--auth", "token"), r"lab auth 'token' is invalid"),
    Case("unknown-command", ("nosuch",), r"No such command 'nosuch'"),
]  # fmt: skip


def _snapshot(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*")}


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Files the cases point at, an empty home and state, and tripwires on every way out:
    sockets, programs, SSH and Postgres connections."""
    keys, trust, inv, results = (tmp_path / d for d in ("keys", "trust", "inv", "results"))
    for folder in (keys, trust, inv, results, keys / "dir", tmp_path / "home"):
        folder.mkdir(parents=True)
    good, _ = ensure_key(keys / "good")
    shutil.copy(good.path, keys / "open")
    (keys / "open").chmod(0o644)
    paramiko.RSAKey.generate(2048).write_private_key_file(str(keys / "rsa"))
    (keys / "garbage").write_text("garbage\n")
    for key in ("rsa", "garbage"):
        (keys / key).chmod(0o600)
    (trust / "known_hosts").write_text("")
    for name, content in (("list", "[1, 2]"), ("fields", '{"203.0.113.9": {"host": "x"}}')):
        (trust / name).mkdir()
        (trust / name / "known_hosts").write_text("")
        (trust / name / "access-proofs.json").write_text(content)
    proved = trust / "proved"
    proved.mkdir()
    (proved / "known_hosts").write_text("")
    (proved / "access-proofs.json").write_text(json.dumps({REMOTE: {
        "host": REMOTE, "port": 22, "user": "deploy", "key_fingerprint": good.fingerprint,
        "host_key_fingerprint": "SHA256:x", "proved_at": 0.0}}))  # fmt: skip
    paths = {"keys": keys, "trust": trust, "inv": inv, "results": results, "tmp": tmp_path,
             "stacks": REPO / "stacks"}  # fmt: skip
    for name, text in INVENTORIES.items():
        (inv / name).write_text(text.replace("{keys}", str(keys)).replace("{trust}", str(trust)))
    (results / "shape.json").write_text(f'{{"schema": "{SCHEMA}", "hosts": [{{}}]}}')
    (results / "empty.json").write_text(f'{{"schema": "{SCHEMA}", "hosts": []}}')
    bad = tmp_path / "stacks-bad"
    shutil.copytree(REPO / "stacks", bad)
    (bad / "Pulumi.dev.yaml").write_text("config:\n  gcp:project: x\n\tbulwark:service: {}\n")
    (tmp_path / "stacks-dir" / "Pulumi.dev.yaml").mkdir(parents=True)
    dev = (REPO / "stacks" / "Pulumi.dev.yaml").read_text()
    for name, text in (("stacks-twice", dev + "  bulwark:environment: prod\n"),
                       ("stacks-port", dev.replace("    max_instances: 3\n",
                                                   "    max_instances: 3\n    port: yes\n")),
                       ("stacks-env", dev.replace("    max_instances: 3\n",
                                                  "    max_instances: 3\n    env:\n"
                                                  "      BAD NAME: x\n"))):  # fmt: skip
        assert text != dev
        shutil.copytree(REPO / "stacks", tmp_path / name)
        (tmp_path / name / "Pulumi.dev.yaml").write_text(text)
    os.mkfifo(keys / "fifo", 0o600)
    for name, waivers in (("policies-bad", "waivers:\n\t- rule: x\n"),
                          ("policies-rule", "waivers:\n  - rule: sql-no-such-rule\n    stack: dev\n"
                           "    resource: x\n    owner: o@example.com\n    reason: a reason long "
                           "enough\n    expires: 2027-01-01\n"),
                          ("policies-epoch", "waivers:\n  - rule: sql-ha-in-prod\n    stack: dev\n"
                           "    resource: x\n    owner: o@example.com\n    reason: a reason long "
                           "enough\n    expires: 1767225600\n"),
                          ("policies-no", "waivers:\n  - rule: sql-ha-in-prod\n    stack: no\n"
                           "    resource: x\n    owner: o@example.com\n    reason: a reason long "
                           "enough\n    expires: 2027-01-01\n")):  # fmt: skip
        shutil.copytree(REPO / "policies", tmp_path / name)
        (tmp_path / name / "waivers.yaml").write_text(waivers)

    contacts: list[str] = []

    def tripwire(what: str) -> Any:
        def trip(*args: object, **kwargs: object) -> None:
            contacts.append(f"{what} {args[1:2]}")
            raise Contacted(what)

        return trip

    monkeypatch.setattr(socket.socket, "connect", tripwire("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", tripwire("socket.connect_ex"))
    monkeypatch.setattr(subprocess.Popen, "__init__", tripwire("program"))
    monkeypatch.setattr(psycopg, "connect", tripwire("postgres"))
    monkeypatch.setattr(paramiko.SSHClient, "connect", tripwire("ssh"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BULWARK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("BULWARK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PW", "not-a-real-password")
    monkeypatch.setenv("PWNL", "not-a-real-password\nsecond line")
    monkeypatch.delenv("BULWARK_UNSET", raising=False)
    monkeypatch.chdir(tmp_path)
    return {"paths": paths, "contacts": contacts}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_one_error_line_and_nothing_else(
    case: Case, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    paths: dict[str, Path] = world["paths"]
    args = [arg.format(**{k: str(v) for k, v in paths.items()}) for arg in case.args]
    before = _snapshot(paths["tmp"])
    code = run(args)
    out, err = capsys.readouterr()
    assert not world["contacts"], f"contacted despite bad input: {world['contacts']}"
    assert "Traceback" not in out + err
    lines = said(err)  # a progress line may come first: the command said it was starting
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert re.search(case.message, lines[0]), lines[0]
    assert code == case.code
    assert out == ""
    assert "not-a-real-password" not in out + err
    assert _snapshot(paths["tmp"]) == before, "a file was written or changed"


def test_the_table_covers_every_command_with_enough_cases() -> None:
    commands = {c.args[0] for c in CASES}
    assert {"bootstrap", "harden", "verify", "plan", "audit", "pooler", "lab", "settings",
            "demo"} <= commands  # fmt: skip
    assert len(CASES) >= 60


# ----------------------------------------------------------------------------- Ctrl-C


def _bulwark() -> str:
    return str(Path(sys.executable).with_name("bulwark"))


@pytest.mark.parametrize("delay", [0.05, 0.1, 0.2, 0.35, 0.5, 0.8, 1.2, 2.0])
def test_ctrl_c_during_start_up_is_one_line_and_130(delay: float) -> None:
    proc = subprocess.Popen(
        [_bulwark(), "plan", "--stack", "dev", "--stacks-dir", str(REPO / "stacks")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in out + err
    # Killed before Python installed its handler (the first instants), or answered by bulwark.
    assert proc.returncode in (-signal.SIGINT, 130), (proc.returncode, err)
    if proc.returncode == 130:
        assert err.strip().splitlines()[-1].endswith("interrupted"), err


def _read_until(primary: int, marker: bytes, seen: bytes = b"", wait: float = 60) -> bytes:
    """What the terminal showed up to `marker` (select-bounded: a missing prompt fails, never
    hangs)."""
    deadline = time.monotonic() + wait
    while marker not in seen and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([primary], [], [], left)
        if ready:
            try:
                chunk = os.read(primary, 1024)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    assert marker in seen, seen
    return seen


def _interrupt(proc: subprocess.Popen[bytes], primary: int, seen: bytes) -> str:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    with __import__("contextlib").suppress(OSError):
        while select.select([primary], [], [], 1)[0] and (chunk := os.read(primary, 1024)):
            seen += chunk
    os.close(primary)
    text = seen.decode(errors="replace")
    assert "Traceback" not in text
    assert "interrupted" in text
    return text


def _bootstrap_on_a_terminal(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    primary, secondary = os.openpty()
    proc = subprocess.Popen(
        [_bulwark(), "bootstrap", REMOTE, "--ask-password", "--trust-dir", str(tmp_path),
         "--deploy-key", str(tmp_path / "op")],
        stdin=secondary, stdout=secondary, stderr=secondary, close_fds=True,
    )  # fmt: skip
    os.close(secondary)
    return proc, primary


def test_bootstrap_on_a_terminal_previews_then_asks_and_ctrl_c_is_130(tmp_path: Path) -> None:
    proc, primary = _bootstrap_on_a_terminal(tmp_path)
    seen = _read_until(primary, b"[y/N]")
    text = seen.decode(errors="replace")
    assert f"trust store: {tmp_path}" in text
    assert "create user deploy with passwordless sudo" in text
    assert "Bootstrap this host? [y/N]" in text
    _interrupt(proc, primary, seen)
    assert not (tmp_path / "op").exists(), "no key is made before the answer"


def test_bootstrap_answered_no_does_nothing(tmp_path: Path) -> None:
    proc, primary = _bootstrap_on_a_terminal(tmp_path)
    seen = _read_until(primary, b"[y/N]")
    os.write(primary, b"n\n")
    seen = _read_until(primary, b"nothing was done", seen)
    assert proc.wait(timeout=30) == 0
    os.close(primary)
    assert not (tmp_path / "op").exists()


def test_ctrl_c_at_the_password_prompt_is_130(tmp_path: Path) -> None:
    proc, primary = _bootstrap_on_a_terminal(tmp_path)
    seen = _read_until(primary, b"[y/N]")
    os.write(primary, b"y\n")
    seen = _read_until(primary, b"password for root", seen)
    os.write(primary, b"s3cr3t")  # typed, not yet entered: the terminal must not echo it
    time.sleep(0.5)
    text = _interrupt(proc, primary, seen)
    assert "s3cr3t" not in text
    assert not (tmp_path / "op").exists(), "no key is made before the password is given"
