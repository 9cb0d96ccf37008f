"""The validation layer for what reaches ssh_config, OpenSSH, pyinfra and file paths, proven on
arbitrary strings: nothing a user, an inventory or CI writes can add a directive to the
ssh_config verify hands to OpenSSH, put a newline inside a value, or fail other than with a
one-line ConfigError. OpenSSH itself (`ssh -G`) reads the configs that come out."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulwark.errors import ConfigError
from bulwark.hosts.inventory import from_data, load
from bulwark.settings.endpoints import (
    check_host,
    check_limit,
    check_login_user,
    check_port,
    split_target,
)
from bulwark.verify import run
from bulwark.verify.run import VerifyTarget
from tests.unit.openssh import openssh_reads

# The keywords, in order, of every Host block verify writes (IdentityFile/IdentitiesOnly only
# with a key). A config with any other line, or more lines, gained a directive.
KEYWORDS = (
    "HostName", "HostKeyAlias", "Port", "User", "UserKnownHostsFile", "GlobalKnownHostsFile",
    "StrictHostKeyChecking", "BatchMode", "PasswordAuthentication",
    "KbdInteractiveAuthentication", "ControlMaster", "ControlPath", "ControlPersist",
    "ConnectTimeout",
)  # fmt: skip
# Anything OpenSSH would split, expand, quote or treat as a comment inside a value.
UNSAFE_IN_VALUE = re.compile(r'[\s"\'#%\\\x00-\x1f\x7f]')

# Strings that look like what a hostile or careless user writes, plus anything at all.
SHAPES = st.sampled_from(
    [
        "deploy", "root", "ec2-user", "web1.example.com", "203.0.113.9", "[2001:db8::1]",
        "2001:db8::1", "bücher.example", "127.1", "-oProxyCommand=touch /tmp/x", "a\nb",
        "x\n  ProxyCommand touch /tmp/pwned\n  #", "%d", '"q"', "a b", "#c", "*", "h:22",
        "ünïcode", "\u200d", "xn--zz", "a" * 70, "", "@", ":", "[", "]",
    ]
)  # fmt: skip
TEXT = st.one_of(SHAPES, st.text(max_size=40), st.from_regex(r"[a-z0-9.:@\[\]%-]{0,30}"))
# Values that should pass, so that the property also covers what reaches OpenSSH.
USERS = st.one_of(
    st.sampled_from(["deploy", "root", "ec2-user", "a_b", "x.y"]),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,12}", fullmatch=True),
)
HOSTS = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9](\.[a-z][a-z0-9-]{0,8}[a-z]){0,3}", fullmatch=True),
    st.sampled_from(["bücher.example", "WEB1.Example.COM.", "xn--bcher-kva.example"]),
)
NAMES = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
PORTS = st.one_of(st.integers(1, 65535), st.integers(1, 65535).map(str))
SPECS = st.builds(
    lambda u, h, p: f"{u}@{f'[{h}]' if ':' in h and p else h}{p}",
    st.one_of(USERS, USERS, TEXT),
    st.one_of(HOSTS, HOSTS, TEXT),
    st.one_of(st.just(""), PORTS.map(lambda p: f":{p}"), st.sampled_from([":99999", ":x", ":"])),
)


def assert_config_is_only_ours(config: str, alias: str, key: bool) -> None:
    lines = config.rstrip("\n").split("\n")
    assert lines[0] == f"Host {alias}"
    keywords = [line.split(" ")[2] for line in lines[1:]]
    expected = list(KEYWORDS) + (["IdentityFile", "IdentitiesOnly"] if key else [])
    assert keywords == expected, config
    for line in lines[1:]:
        indent, keyword, value = line[:2], *line[2:].split(" ", 1)
        assert indent == "  ", line
        assert value, line
        if keyword == "ControlPath":
            value = value.removesuffix("/%C")  # OpenSSH's own token, written by bulwark
        assert not UNSAFE_IN_VALUE.search(value), f"{keyword} value {value!r} needs quoting"


def same_host(value: str) -> object:
    """A host as compared: addresses by value (OpenSSH prints ::1:0 as ::0.1.0.0)."""
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return value


def outcome(call: Callable[[], T]) -> T | ConfigError:
    """What `call` returns, or the ConfigError it raises (any other exception propagates)."""
    try:
        return call()
    except ConfigError as exc:
        return exc


def write_config(tmp: Path, target: VerifyTarget) -> tuple[Path, str]:
    work = tmp / f"w{next(_serial)}"
    work.mkdir()
    text = run.ssh_config({"h0": target}, work)
    (work / "ssh_config").write_text(text)
    return work / "ssh_config", text


_serial = count()
T = TypeVar("T")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("files")
    (base / "id").write_text("")
    (base / "known_hosts").write_text("")
    return base


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.one_of(TEXT, SPECS, SPECS, SPECS))
def test_any_verify_target_is_refused_in_one_line_or_cannot_reach_the_config(
    spec: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("spec")
    target = outcome(lambda: run.from_spec(spec, key=None, known_hosts=tmp / "known_hosts"))
    if isinstance(target, ConfigError):
        assert "\n" not in str(target)
        return
    (tmp / "known_hosts").write_text("")
    path, text = write_config(tmp, target)
    assert_config_is_only_ours(text, "h0", key=False)
    seen = openssh_reads(path, "h0")
    assert (same_host(seen["hostname"]), seen["user"], seen["port"]) == (
        same_host(target.hostname),
        target.user,
        str(target.port),
    )
    assert "proxycommand" not in seen
    assert "localcommand" not in seen


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.one_of(NAMES, NAMES, TEXT),
    hostname=st.one_of(st.none(), HOSTS, HOSTS, TEXT),
    user=st.one_of(st.none(), USERS, USERS, TEXT),
    port=st.one_of(st.none(), PORTS, st.integers(-5, 70000), TEXT),
    key=st.one_of(st.none(), st.just("~/.ssh/id_ed25519"), TEXT),
    known=st.one_of(st.none(), st.just("hosts/known_hosts"), TEXT),
)
def test_any_inventory_host_is_refused_in_one_line_or_reaches_the_config_unchanged(
    name: str,
    hostname: str | None,
    user: str | None,
    port: object,
    key: str | None,
    known: str | None,
    files: Path,
) -> None:
    data: dict[str, Any] = {
        "ssh_hostname": hostname,
        "ssh_user": user,
        "ssh_port": port,
        "ssh_key": key,
        "ssh_known_hosts_file": known,
    }
    host = outcome(lambda: from_data(name, data))
    if isinstance(host, ConfigError):
        assert "\n" not in str(host)
        return
    # What did validate is in its one form: no control character survived into any value.
    for value in (
        host.name,
        host.target.host,
        host.user,
        str(host.key_file),
        str(host.known_hosts),
    ):
        assert not re.search(r"[\x00-\x1f\x7f]", value), value
    target = VerifyTarget(
        alias=host.name,
        hostname=host.target.host,
        port=host.target.port,
        user=host.user,
        key=files / "id",
        known_hosts=files / "known_hosts",
    )
    path, text = write_config(files, target)
    assert_config_is_only_ours(text, "h0", key=True)
    seen = openssh_reads(path, "h0")
    assert (same_host(seen["hostname"]), seen["user"]) == (same_host(host.target.host), host.user)


_inventories = count()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.one_of(NAMES, TEXT),
    hostname=st.one_of(HOSTS, TEXT),
    user=st.one_of(USERS, TEXT),
    port=st.one_of(PORTS, st.integers(-1, 70000), TEXT),
)
def test_inventory_files_with_any_values_load_or_fail_in_one_line(
    name: str, hostname: str, user: str, port: object, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Through pyinfra's own loader, from a real inventory file (as an operator writes it)."""
    data = {"ssh_hostname": hostname, "ssh_user": user, "ssh_port": port}
    path = tmp_path_factory.mktemp("inv") / f"inv{next(_inventories)}.py"
    path.write_text(f"import json\nweb = [(json.loads({json.dumps(json.dumps(name))}), "
                    f"json.loads({json.dumps(json.dumps(data))}))]\n")  # fmt: skip
    hosts = outcome(lambda: load(path))
    if isinstance(hosts, ConfigError):
        assert "\n" not in str(hosts)
        return
    (host,) = hosts
    assert host.target.host == check_host(hostname)
    assert host.user == check_login_user(user)
    assert host.target.port == check_port(port)


@pytest.mark.parametrize(
    ("spec", "parts"),
    [
        ("deploy@[2001:db8::1]:22", ("deploy", "2001:db8::1", 22)),
        ("deploy@[2001:DB8::1]", ("deploy", "2001:db8::1", None)),
        ("deploy@2001:db8::1", ("deploy", "2001:db8::1", None)),
        ("root@203.0.113.9:2222", ("root", "203.0.113.9", 2222)),
        ("ec2-user@Web1.Example.COM.", ("ec2-user", "web1.example.com", None)),
        ("ops@bücher.example", ("ops", "xn--bcher-kva.example", None)),
    ],
)
def test_targets_are_read_in_their_one_form(spec: str, parts: tuple[str, str, int | None]) -> None:
    assert split_target(spec) == parts


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("127.1", "write it as 127.0.0.1"),
        ("2130706433", "write it as 127.0.0.1"),
        ("0x7f000001", "write it as 127.0.0.1"),
        ("0177.0.0.1", "write it as 127.0.0.1"),
        ("fe80::1%eth0", "scoped"),
        ("[web1]", "brackets hold an IPv6 address"),
        ("a..example", "not a valid DNS name"),
        ("a_b.example", "not a valid DNS name"),
        ("-a.example", "not a valid DNS name"),
        ("a" * 64 + ".example", "not a valid DNS name"),
        ("a\u200db.example", "not a valid DNS name"),
        ("\udcff", "not a valid DNS name"),
        ("h\n", "whitespace or a control character"),
        ("h ost", "whitespace or a control character"),
        ("", "not a host"),
    ],
)
def test_bad_hosts_say_what_to_write(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_host(value)


@pytest.mark.parametrize("value", ["0", "-1", "65536", "99999", "²", " 22", "22\n", "2.5", True])
def test_bad_ports_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="is not a port: use a number 1-65535"):
        check_port(value)


@pytest.mark.parametrize("value", ["deploy\n", "-oProxyCommand=x", "a b", "a@b", "x:y", "", "é"])
def test_bad_login_users_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="invalid user name"):
        check_login_user(value)


def test_limit_patterns_are_names_with_wildcards() -> None:
    assert check_limit("web*,db1,edge-?") == ("web*", "db1", "edge-?")
    for bad in ("-y", "web1 web2", "a/b", "web1,", "x\n"):
        with pytest.raises(ValueError, match="is not a host or group name"):
            check_limit(bad)
