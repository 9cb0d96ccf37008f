"""Everything that reaches an ssh_config, an OpenSSH or pyinfra command line, a shell or a file
path from a user, an inventory or CI: host names, user names, ports, paths and inventory names.

Each check returns the value in the one form bulwark uses from then on (an internationalised
host name in its ASCII form, an IPv6 literal without brackets, a port as an int) or raises
ValueError with a message that says what is wrong and how to write it; callers name the field
(`--port`, `web1: ssh_port`) and raise ConfigError. Nothing is quoted to make it safe: a value
that would need quoting is refused, so no value can carry a second directive, option or command.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from pathlib import Path
from typing import Annotated

import idna
from pydantic import BeforeValidator

# Printable ASCII and beyond, minus C0/C1 controls and DEL: a newline in a path would end an
# ssh_config line; any control character in a path is a mistake or an attack.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
NAME_MAX, PATH_MAX = 255, 4095  # Linux's limits on a file name and a path
# Who we log in as: POSIX portable names (what useradd and cloud images use: deploy, ec2-user,
# ubuntu, root). No '@', ':', '%', whitespace or a leading '-', which ssh would read as syntax.
_LOGIN_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
# Inventory host names become ssh_config aliases, pyinfra --limit patterns and report rows.
_INVENTORY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")
_MAX_NAME = 253


def check_port(value: object) -> int:
    """A TCP port 1-65535, given as an int or as digits (inventories and CLI strings)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a port: use a number 1-65535")
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,5}", value):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise ValueError(f"{value!r} is not a port: use a number 1-65535")
    if not 1 <= value <= 65535:
        raise ValueError(f"{value} is not a port: use a number 1-65535")
    return value


def check_host(value: object) -> str:
    """A DNS name (RFC 1123; internationalised names in their IDNA ASCII form) or an IP
    address (IPv6 with or without brackets). Numbers that only the C resolver reads as
    addresses (127.1, 2130706433, 0x7f000001) are refused with their dotted form."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a host: use a DNS name or an IP address")
    if _CONTROL.search(value) or any(c.isspace() for c in value):
        raise ValueError(
            f"host {value!r} contains whitespace or a control character: use a DNS name or an "
            "IP address"
        )
    literal = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        address = ipaddress.ip_address(literal)
    except ValueError:
        if literal is not value:
            raise ValueError(
                f"host {value!r}: brackets hold an IPv6 address, e.g. [2001:db8::1]"
            ) from None
    else:
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            raise ValueError(
                f"host {value!r}: scoped (link-local) IPv6 addresses are not supported: use a "
                "global address or a DNS name"
            )
        return str(address)
    try:
        dotted = socket.inet_ntoa(socket.inet_aton(value))
    except (OSError, UnicodeError):
        pass
    else:
        raise ValueError(
            f"host {value!r} is an IPv4 address in a shorthand form: write it as {dotted}"
        )
    try:
        name = idna.encode(value, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(
            f"host {value!r} is not a valid DNS name ({exc}): use letters, digits and '-' in "
            "dot-separated labels (RFC 1123), or an IP address"
        ) from None
    name = name.removesuffix(".")
    if not name or len(name) > _MAX_NAME:
        raise ValueError(f"host {value!r} is not a valid DNS name: use 1-253 characters")
    if name.rsplit(".", 1)[-1].isdecimal():
        # No top-level domain is a number, and resolvers read such names as addresses.
        raise ValueError(
            f"host {value!r} is neither a DNS name nor an IP address: write an IPv4 address as "
            "four decimal numbers (e.g. 192.0.2.10)"
        )
    return name


def check_login_user(value: object) -> str:
    """A remote login user name (root included: first contact may be as root)."""
    if not isinstance(value, str) or not _LOGIN_USER.fullmatch(value):
        raise ValueError(
            f"invalid user name {value!r}: use 1-32 of letters, digits, '_', '.' or '-', "
            "starting with a letter or '_'"
        )
    return value


def check_path(value: object) -> Path:
    """A file path without control characters (a newline would end an ssh_config line)."""
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a path: give a file path")
    if _CONTROL.search(value):
        raise ValueError(f"path {value!r} contains a control character: rename the file")
    if len(value) > PATH_MAX or any(len(part) > NAME_MAX for part in value.split("/")):
        raise ValueError(
            f"path {value[:40]!r}... is longer than Linux allows ({NAME_MAX} bytes a name, "
            f"{PATH_MAX} in all): shorten it"
        )
    return Path(value)


def check_inventory_name(value: object) -> str:
    """The name of an inventory host: it becomes an ssh_config alias, a --limit pattern and a
    report row, so only letters, digits, '.', '_' and '-' (a DNS name or 'web1')."""
    if isinstance(value, str) and value.startswith("@"):
        raise ValueError(
            f"{value} is a pyinfra connector, not an SSH host: bulwark reaches hosts over SSH "
            "only (name the host and set ssh_hostname)"
        )
    if not isinstance(value, str) or not _INVENTORY_NAME.fullmatch(value):
        raise ValueError(
            f"invalid host name {value!r}: use 1-63 of letters, digits, '.', '_' or '-' (set "
            "ssh_hostname for an address such as an IPv6 one)"
        )
    return value


def check_limit(value: str) -> tuple[str, ...]:
    """`--limit`: comma-separated host or group names, with * and ? as wildcards."""
    patterns = tuple(value.split(","))
    for pattern in patterns:
        if not re.fullmatch(r"[A-Za-z0-9_.*?-]{1,63}", pattern) or pattern.startswith("-"):
            raise ValueError(
                f"{pattern!r} is not a host or group name: use names of letters, digits, '.', "
                "'_' or '-', with * or ? as wildcards, separated by commas"
            )
    return patterns


def split_target(spec: str) -> tuple[str, str, int | None]:
    """`user@host[:port]` into its parts, validated; IPv6 in brackets: `deploy@[2001:db8::1]:22`.

    An unbracketed IPv6 address (`deploy@2001:db8::1`) is the host, with no port."""
    user, sep, rest = spec.rpartition("@")
    if not sep or not user or not rest:
        raise ValueError("write the target as user@host[:port]")
    port: int | None = None
    if rest.startswith("["):
        end = rest.find("]")
        host, tail = (rest[: end + 1], rest[end + 1 :]) if end > 0 else (rest, "")
        if end < 0 or (tail and not tail.startswith(":")):
            raise ValueError("write an IPv6 target as user@[2001:db8::1]:port")
        port = check_port(tail[1:]) if tail else None
    elif rest.count(":") == 1:
        host, _, tail = rest.partition(":")
        port = check_port(tail)
    else:
        host = rest
    return check_login_user(user), check_host(host), port


HostName = Annotated[str, BeforeValidator(check_host)]
LoginUser = Annotated[str, BeforeValidator(check_login_user)]
Port = Annotated[int, BeforeValidator(check_port)]
SafePath = Annotated[Path, BeforeValidator(check_path)]
