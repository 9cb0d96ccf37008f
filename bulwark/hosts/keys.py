"""Operator SSH keys: load an existing ed25519 key pair, or make one with `cryptography`."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from bulwark.errors import ConfigError
from bulwark.hosts.sshcrypto import RSA_HOST_KEY_BITS

PRIVATE_MODE = 0o600


@dataclass(frozen=True)
class KeyPair:
    """A private key on disk and its public half as an authorized_keys line."""

    path: Path
    pkey: paramiko.PKey
    public_line: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.pkey)


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint, as `ssh-keygen -l` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def public_key_blob(line: str) -> tuple[str, str]:
    """The (type, base64) of an authorized_keys line, ignoring options and comment."""
    for i, field in enumerate(parts := line.split()):
        if field.startswith(("ssh-", "ecdsa-", "sk-")) and i + 1 < len(parts):
            return field, parts[i + 1]
    raise ConfigError(f"not an OpenSSH public key line: {line[:40]!r}")


def check_private(path: Path) -> None:
    """Refuse a private key others can read or write, as OpenSSH does ("UNPROTECTED PRIVATE KEY
    FILE"): bulwark would otherwise go on with a key ssh itself refuses later."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"key file {path} does not exist: pass an existing private key") from None
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        # A FIFO or a device would block the read, or never end it.
        raise ConfigError(f"key file {path} is not a regular file: pass a private key file")
    if stat.S_ISREG(mode) and mode & 0o077:
        raise ConfigError(
            f"key file {path} is accessible by others (mode {stat.S_IMODE(mode):04o}): "
            f"`chmod 600 {path}`, as OpenSSH requires"
        )


def hardened_sshd_refuses(key: KeyPair) -> str | None:
    """Why the hardened sshd would refuse `key` as a login key (None: it accepts it)."""
    bits = key.pkey.get_bits()
    if key.pkey.get_name() == "ssh-rsa" and bits < RSA_HOST_KEY_BITS:
        return (
            f"is a {bits}-bit RSA key, and the hardened sshd refuses RSA keys under "
            f"{RSA_HOST_KEY_BITS} bits (RequiredRSASize): use an ed25519 key"
        )
    return None


def load_key(path: Path) -> KeyPair:
    """Load a private key (ed25519, ECDSA or RSA; unencrypted, 0600 or stricter) with one-line
    errors."""
    try:
        check_private(path)
        pkey = paramiko.PKey.from_path(path)
    except FileNotFoundError:
        raise ConfigError(f"key file {path} does not exist: pass an existing private key") from None
    except PermissionError:
        raise ConfigError(
            f"key file {path} is not readable: fix its permissions (chmod 600, owned by you)"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"key file {path} is a directory: pass a private key file") from None
    except (paramiko.PasswordRequiredException, TypeError):
        # paramiko raises TypeError (from cryptography) for encrypted OpenSSH-format keys.
        raise ConfigError(
            f"key file {path} is encrypted: use an unencrypted deploy key for automation"
        ) from None
    except (paramiko.SSHException, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"key file {path} is not an OpenSSH private key ({exc})") from None
    comment = f"bulwark@{path.stem}"
    return KeyPair(path, pkey, f"{pkey.get_name()} {pkey.get_base64()} {comment}")


def ensure_key(path: Path) -> tuple[KeyPair, bool]:
    """Load the key at `path`, creating an ed25519 pair there (0600) when none exists.

    Returns the key and whether it was created.
    """
    if path.exists():
        return load_key(path), False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    # O_EXCL: never overwrite a key someone else created meanwhile; mode set at creation so the
    # private key is never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    path.with_name(path.name + ".pub").write_bytes(public + f" bulwark@{path.stem}\n".encode())
    return load_key(path), True
