"""SCRAM-SHA-256 verifiers as PostgreSQL stores them (RFC 5802/7677), computed on the controller
so a role's password never reaches the host: only its salted verifier does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

ITERATIONS = 4096  # PostgreSQL's default scram_iterations


def password_from_file(text: str) -> str:
    """The password a password file holds (one trailing line break allowed); ValueError for
    what would not mean the same password to Postgres and to bulwark: Postgres normalises a
    non-ASCII password (SASLprep) before hashing it, and whitespace at either end is more
    likely an editor's than the password's."""
    password = text.removesuffix("\n").removesuffix("\r")
    if not password:
        raise ValueError("is empty: write the role's password in it")
    if "\n" in password or "\r" in password:
        raise ValueError("holds more than one line: write the password alone")
    if password != password.strip():
        raise ValueError("the password starts or ends with whitespace: write it without")
    if not password.isascii() or not password.isprintable():
        raise ValueError(
            "the password holds non-ASCII or control characters, which Postgres normalises "
            "(SASLprep) before hashing and clients may send differently: use printable ASCII"
        )
    return password


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return stored_key, server_key


def verifier(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64 as Postgres writes it."""
    salt = salt if salt is not None else os.urandom(16)
    stored, server = _keys(password, salt, iterations)
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored).decode()}:{b64(server).decode()}"
    )


def matches(password: str, stored: str) -> bool:
    """Whether `stored` (a verifier from pg_authid or a userlist) was made from `password`."""
    try:
        scheme, params, keys = stored.split("$")
        iterations, salt = params.split(":")
    except ValueError:
        return False
    if scheme != "SCRAM-SHA-256" or keys.count(":") != 1:
        return False
    want = verifier(password, salt=base64.b64decode(salt), iterations=int(iterations))
    return hmac.compare_digest(want, stored)
