"""sshd algorithms per OpenSSH version, chosen to pass ssh-audit's hardened policy for the distro.

ssh-audit's server policies compare the offered lists exactly (order included), so each set
below is copied from the policy it targets. Version logic lives here, never in templates.
"""

from __future__ import annotations

from dataclasses import dataclass

# fmt: off
ETM_MACS_256_FIRST = ("hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com",
                      "umac-128-etm@openssh.com")
ETM_MACS_512_FIRST = ("hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com",
                      "umac-128-etm@openssh.com")
CIPHERS = ("chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes256-ctr", "aes192-ctr",
           "aes128-gcm@openssh.com", "aes128-ctr")
# fmt: on
HOST_KEY_ALGORITHMS = ("ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256")
RSA_HOST_KEY_BITS = 4096
MIN_MODULUS_BITS = 3072


@dataclass(frozen=True)
class SshCrypto:
    """The algorithm lists for one OpenSSH range and the ssh-audit policy they pass."""

    policy: str
    kex: tuple[str, ...]
    ciphers: tuple[str, ...]
    macs: tuple[str, ...]
    host_key_algorithms: tuple[str, ...] = HOST_KEY_ALGORITHMS


# OpenSSH >= 9.9 (Debian 13): post-quantum key exchange first. The official policy is PQ-only,
# but paramiko (and so pyinfra and testinfra, bulwark's own automation) has no post-quantum kex:
# a PQ-only server locks the automation out (the lockout guard caught exactly that). So
# curve25519 (under its libssh.org name) stays, last: OpenSSH clients still negotiate ML-KEM.
# This one addition is the only deviation from the policy; the lab tests check nothing else
# differs.
PARAMIKO_KEX = "curve25519-sha256@libssh.org"  # the only curve25519 name paramiko knows
PQ_FIRST = SshCrypto(
    policy="Hardened Debian 13 (version 1)",
    kex=(
        "mlkem768x25519-sha256",
        "sntrup761x25519-sha512",
        "sntrup761x25519-sha512@openssh.com",
        PARAMIKO_KEX,
    ),
    ciphers=CIPHERS,
    macs=ETM_MACS_512_FIRST,
)
# OpenSSH 9.6-9.8 (Ubuntu 24.04).
UBUNTU_2404 = SshCrypto(
    policy="Hardened Ubuntu Server 24.04 LTS (version 2)",
    kex=(
        "sntrup761x25519-sha512@openssh.com",
        "curve25519-sha256",
        "curve25519-sha256@libssh.org",
        "diffie-hellman-group18-sha512",
        "diffie-hellman-group-exchange-sha256",
        "diffie-hellman-group16-sha512",
    ),
    ciphers=CIPHERS,
    macs=ETM_MACS_512_FIRST,
)
# OpenSSH 8.5-9.5 (Debian 12, Ubuntu 22.04). Version 3 of the Debian 12 policy adds the
# `sntrup761x25519-sha512` alias, which only OpenSSH >= 9.9 offers, so version 2 is the target.
DEBIAN_12 = SshCrypto(
    policy="Hardened Debian 12 (version 2)",
    kex=(
        "sntrup761x25519-sha512@openssh.com",
        "curve25519-sha256",
        "curve25519-sha256@libssh.org",
        "diffie-hellman-group16-sha512",
        "diffie-hellman-group18-sha512",
        "diffie-hellman-group-exchange-sha256",
    ),
    ciphers=CIPHERS,
    macs=ETM_MACS_256_FIRST,
)


def crypto_for(version: tuple[int, int]) -> SshCrypto:
    """The hardened algorithm set for an OpenSSH (major, minor) version."""
    if version >= (9, 9):
        return PQ_FIRST
    if version >= (9, 6):
        return UBUNTU_2404
    if version >= (8, 5):
        return DEBIAN_12
    raise ValueError(
        f"OpenSSH {version[0]}.{version[1]} is too old for bulwark's SSH hardening "
        "(needs >= 8.5: Debian 12, Ubuntu 22.04 or newer)"
    )
