"""Whether a plain setting holds a secret: by its name, and by its value (a name can be
neutral: JWT_SIGNING_KEY, APP_KEY). Pure and shared: the stack settings refuse such a value
before anything is declared, and the policy rules catch it wherever a plan or CrossGuard shows
one. Callers never echo the value: the reason names the kind of secret only."""

from __future__ import annotations

import math
import re
from collections import Counter

SECRET_NAME = re.compile(
    r"(PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|SIGNING_?KEY|CREDENTIAL"
    r"|(^|_)KEY$|DSN|DATABASE_URL|AUTH)",
    re.IGNORECASE,
)
PEM = re.compile(r"-----BEGIN [A-Z0-9 ]*(PRIVATE KEY|CERTIFICATE REQUEST|KEY)-----")
JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
CREDENTIAL_IN_URL = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
# Providers' token shapes: GitHub, GitLab, Slack, AWS access key ids, Google API keys, Stripe.
KNOWN_TOKEN = re.compile(
    r"\b(gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,}|glpat-[A-Za-z0-9_-]{20,}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}"
    r"|[sr]k_(live|test)_[A-Za-z0-9]{20,})\b"
)
# A random-looking run: base64 or base64url characters, long, mixed classes, and dense in
# information. Pure hex is left alone (git SHAs and image digests are hex and are not secret).
CANDIDATE = re.compile(r"[A-Za-z0-9+/_=-]{24,}")
MIN_BITS_PER_CHAR = 4.2


def entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _random_looking(value: str) -> bool:
    for run in CANDIDATE.findall(value):
        core = run.rstrip("=")
        if re.fullmatch(r"[0-9a-fA-F]+", core):
            continue
        classes = sum(bool(re.search(pattern, core)) for pattern in (r"[a-z]", r"[A-Z]", r"[0-9]"))
        if classes == 3 and entropy(core) >= MIN_BITS_PER_CHAR:
            return True
    return False


def secret_value(value: str) -> str | None:
    """What kind of secret `value` looks like ("a private key", ...), or None."""
    if PEM.search(value):
        return "a PEM private key"
    if JWT.search(value):
        return "a JSON web token"
    if CREDENTIAL_IN_URL.search(value):
        return "a URL with a password"
    if KNOWN_TOKEN.search(value):
        return "a provider's access token"
    if _random_looking(value):
        return "a long random string (a key or token)"
    return None


def secret_setting(name: str, value: object) -> str | None:
    """Why the plain setting `name=value` must be a secret reference instead, or None."""
    if value is None:
        return None
    if SECRET_NAME.search(name):
        return f"its name ({name}) says it is a secret"
    found = secret_value(str(value))
    return f"its value looks like {found}" if found else None
