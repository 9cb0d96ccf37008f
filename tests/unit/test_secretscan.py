"""Secrets are found by value as well as by name; what is not a secret (digests, SHAs, URLs,
ordinary words and numbers) is left alone; the reason never repeats the value."""

from __future__ import annotations

import pytest

from bulwark.secretscan import entropy, secret_setting, secret_value

SECRETS = {
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn": "a PEM private key",
    "-----BEGIN RSA PRIVATE KEY-----": "a PEM private key",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U": (
        "a JSON web token"
    ),
    "postgresql://app:hunter2@10.0.0.5:6432/app": "a URL with a password",
    "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8": "a provider's access token",
    "AKIAIOSFODNN7EXAMPLE": "a provider's access token",
    "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q": "a provider's access token",
    "base64:q8Vz3LmN0pR7sT2uW5xY9aB4cD6eF1gH2iJ3kL4m": "a long random string (a key or token)",
    "Zx9Lq2Wv8Rt5Yp3Nm7Kb1Hc6Jd4Fg0Sa": "a long random string (a key or token)",
}
NOT_SECRETS = [
    "europe-west1-docker.pkg.dev/acme/app/api@sha256:" + "3f1c2b9d8e7a6f5e" * 4,
    "4b825dc642cb6eb9a060e54bf8d69288fbee4904",  # a git SHA
    "https://api.example.com/v1/orders",
    "postgresql://app@10.0.0.5:6432/app",  # no password in it
    "INFO", "2", "none", "true", "europe-west1", "acme-bulwark-prod",
    "projects/acme-bulwark-prod/global/networks/bulwark-prod-vpc",
    "The quick brown fox jumps over the lazy dog",
]  # fmt: skip


@pytest.mark.parametrize(("value", "kind"), SECRETS.items())
def test_secrets_are_found_by_value(value: str, kind: str) -> None:
    assert secret_value(value) == kind
    why = secret_setting("NEUTRAL_NAME", value)
    assert why == f"its value looks like {kind}"
    assert value not in why


@pytest.mark.parametrize("value", NOT_SECRETS)
def test_ordinary_values_are_not_secrets(value: str) -> None:
    assert secret_value(value) is None
    assert secret_setting("LOG_LEVEL", value) is None


@pytest.mark.parametrize(
    "name",
    ["DB_PASSWORD", "JWT_SIGNING_KEY", "APP_KEY", "GITHUB_TOKEN", "SENTRY_DSN", "api_key",
     "CLIENT_SECRET", "GCP_CREDENTIALS"],
)  # fmt: skip
def test_secret_looking_names_are_found_whatever_the_value(name: str) -> None:
    why = secret_setting(name, "x")
    assert why is not None
    assert name in why


def test_entropy_is_in_bits_per_character() -> None:
    assert entropy("aaaa") == 0.0
    assert entropy("abcd") == pytest.approx(2.0)
