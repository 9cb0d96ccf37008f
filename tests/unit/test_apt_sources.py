"""apt sources: the security archive a host's apt must carry for security updates to arrive,
read from either format, and the deb822 stanzas harden adds when it is missing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pyinfra.api import OperationError
from pyinfra.operations import files

from bulwark.hosts import operations
from bulwark.hosts.facts import BLANK_MARK, FILE_MARK, AptSources, FirstUpgrade, parse_sources
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


class SourcesHost:
    """pyinfra's `host` for the operation: the recorded sources and first-upgrade stamp, parsed
    by the real fact classes."""

    name = "web1"

    def __init__(self, sources: str, upgraded: str) -> None:
        marked = [line or BLANK_MARK for line in sources.splitlines()]
        self.output = {AptSources: [f"{FILE_MARK}/etc/apt/sources.list.d/debian.sources", *marked],
                       FirstUpgrade: [upgraded] if upgraded else []}  # fmt: skip
        self.noops: list[str] = []

    def get_fact(self, cls: type[Any], **kwargs: object) -> Any:
        return cls().process(self.output[cls])

    def noop(self, message: str) -> None:
        self.noops.append(message)


def run_op(
    monkeypatch: pytest.MonkeyPatch, sources: str, *, manage: bool = True, upgraded: str = ""
) -> tuple[list[str], SourcesHost]:
    fake = SourcesHost(sources, upgraded)
    monkeypatch.setattr(operations, "host", fake)

    def put(**kwargs: Any) -> Iterator[str]:
        yield f"upload {kwargs['dest']} {kwargs['mode']}: {kwargs['src'].getvalue()}"

    monkeypatch.setattr(files.put, "_inner", put)
    cmds = operations.security_sources._inner(distro_id="debian", codename="bookworm",
                                              manage=manage)  # fmt: skip
    return [str(c) for c in cmds], fake


def test_a_host_without_the_archive_gets_it_and_apt_reads_it_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cmds, _ = run_op(monkeypatch, DEBIAN_NO_SECURITY, upgraded="2026-12-01 10:00:00")
    assert cmds[0].startswith(f"upload {operations.SECURITY_SOURCES} 644: ")
    assert "Suites: bookworm-security" in cmds[0]
    assert cmds[1].startswith("apt-get update")


def test_on_a_first_run_the_upgrades_own_apt_update_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cmds, _ = run_op(monkeypatch, DEBIAN_NO_SECURITY)
    assert len(cmds) == 1
    assert cmds[0].startswith(f"upload {operations.SECURITY_SOURCES}")


def test_a_host_with_the_archive_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    cmds, fake = run_op(monkeypatch, DEBIAN_FULL, upgraded="2026-12-01 10:00:00")
    assert cmds == []
    assert fake.noops == ["apt has bookworm-security among its sources"]


def test_the_opt_out_refuses_a_host_without_the_archive(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(OperationError, match=r"web1: apt's sources lack bookworm-security.*"
                       r"bulwark.updates.manage_sources: false"):  # fmt: skip
        run_op(monkeypatch, DEBIAN_NO_SECURITY, manage=False)
    cmds, _ = run_op(monkeypatch, DEBIAN_FULL, manage=False)  # nothing to refuse
    assert cmds == []
