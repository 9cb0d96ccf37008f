"""apt sources: the security archive a host's apt must carry for security updates to arrive,
read from either format, and the deb822 stanzas harden adds when it is missing."""

from __future__ import annotations

import pytest

from bulwark.hosts.facts import BLANK_MARK, FILE_MARK, AptSources, parse_sources
from bulwark.hosts.operations import missing_suites, sources_stanzas

# Debian 12's cloud image as some providers ship it: deb822, the security stanza dropped.
DEBIAN_NO_SECURITY = """\
Types: deb deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
DEBIAN_FULL = (
    DEBIAN_NO_SECURITY
    + """
Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
)
ONE_LINE = """\
# deb cdrom:[Debian GNU/Linux 12]/ bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example/debian bookworm main non-free-firmware
deb-src http://mirror.example/debian bookworm-security main
"""  # noqa: E501
UBUNTU_PORTS = """\
Types: deb
URIs: http://ports.ubuntu.com/ubuntu-ports
Suites: noble noble-updates noble-backports
Components: main restricted universe multiverse
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg
"""


def test_deb822_and_one_line_entries_are_read_alike() -> None:
    sources = parse_sources({"/etc/apt/sources.list.d/debian.sources": DEBIAN_FULL,
                             "/etc/apt/sources.list": ONE_LINE})  # fmt: skip
    assert [(s.suites, s.components) for s in sources] == [
        (("bookworm", "bookworm-updates"), ("main", "contrib")),
        (("bookworm-security",), ("main", "contrib")),
        (("bookworm",), ("main", "non-free-firmware")),  # deb-src and comments are not sources
    ]
    assert sources[2].uris == ("http://mirror.example/debian",)
    assert missing_suites(sources, "bookworm") == []


def test_disabled_and_source_only_stanzas_do_not_count() -> None:
    text = DEBIAN_NO_SECURITY + (
        "\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n"
        "Components: main\nEnabled: no\n\nTypes: deb-src\nURIs: http://x/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n"
    )
    sources = parse_sources({"/etc/apt/sources.list.d/debian.sources": text})
    assert missing_suites(sources, "bookworm") == ["bookworm-security"]


def test_the_missing_security_archive_is_added_in_deb822_with_the_releases_components() -> None:
    sources = parse_sources({"/etc/apt/sources.list.d/debian.sources": DEBIAN_NO_SECURITY})
    missing = missing_suites(sources, "bookworm")
    assert missing == ["bookworm-security"]
    text = sources_stanzas("debian", "bookworm", sources, missing)
    added = parse_sources({"/etc/apt/sources.list.d/bulwark-security.sources": text})
    assert added[0].uris == ("http://deb.debian.org/debian-security",)
    assert added[0].suites == ("bookworm-security",)
    assert added[0].components == ("main", "contrib")
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in text
    assert missing_suites(sources + added, "bookworm") == []  # a re-run adds nothing


def test_a_one_line_host_without_security_or_updates_gets_both() -> None:
    sources = parse_sources({"/etc/apt/sources.list": ONE_LINE})
    missing = missing_suites(sources, "bookworm")
    assert missing == ["bookworm-security", "bookworm-updates"]
    added = parse_sources({"x.sources": sources_stanzas("debian", "bookworm", sources, missing)})
    assert [(s.uris, s.suites) for s in added] == [
        (("http://deb.debian.org/debian-security",), ("bookworm-security",)),
        (("http://mirror.example/debian",), ("bookworm-updates",)),  # the release's own mirror
    ]


def test_ubuntu_ports_hosts_get_the_ports_security_pocket() -> None:
    sources = parse_sources({"/etc/apt/sources.list.d/ubuntu.sources": UBUNTU_PORTS})
    missing = missing_suites(sources, "noble")
    assert missing == ["noble-security"]
    (added,) = parse_sources({"x.sources": sources_stanzas("ubuntu", "noble", sources, missing)})
    assert added.uris == ("http://ports.ubuntu.com/ubuntu-ports",)
    assert added.components == ("main", "restricted", "universe", "multiverse")


@pytest.mark.parametrize("codename", ["bookworm", "trixie"])
def test_the_fact_reads_what_its_command_prints(codename: str) -> None:
    # As pyinfra hands it over: lines, empty ones dropped (hence the blank marker).
    text = DEBIAN_FULL.replace("bookworm", codename)
    output = [f"{FILE_MARK}/etc/apt/sources.list.d/debian.sources"] + [
        line or BLANK_MARK for line in text.splitlines()
    ]
    sources = AptSources().process(output)
    assert missing_suites(sources, codename) == []
    assert "sed 's/^[[:space:]]*$/" in AptSources().command()
