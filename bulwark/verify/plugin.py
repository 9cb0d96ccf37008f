"""pytest plugin for the verification suite: per-host expectations, the host snapshot, the probes'
endpoint, and one result per (host, control) written as JSON. Inert unless the suite runs.

    pytest --pyargs bulwark.verify.suite --hosts=ssh://web1 --ssh-config=ssh_config --sudo \\
        [--bulwark-hosts hosts.json] [--bulwark-json results.json] [--junitxml results.xml]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bulwark.settings.hosts import HardenSettings, harden_settings
from bulwark.verify.controls import CONTROLS, MARK
from bulwark.verify.probes import Endpoint, resolve_endpoint
from bulwark.verify.results import ControlResult, HostResult, Report
from bulwark.verify.state import HostState

REPORT_KEY = pytest.StashKey[Report]()
NA_PREFIX = "not applicable: "


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bulwark verify")
    group.addoption("--bulwark-hosts", help="JSON: per host alias, its settings and forwards.")
    group.addoption("--bulwark-json", help="Write the verification results here (JSON).")
    group.addoption(
        "--bulwark-events",
        help="Append one JSON line per event here: a host's control count, each result.",
    )
    group.addoption(
        "--bulwark-ban-probe",
        action="store_true",
        help="Also prove fail2ban bans a brute-forcer (opt-in; runs last; unbans after).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARK}(id): the bulwark control a test verifies")
    config.addinivalue_line("markers", "ban_probe: the opt-in fail2ban probe (runs last)")
    config.stash[REPORT_KEY] = Report()


class HostMeta:
    """What the inventory declares for one host (settings) and how its ports are forwarded."""

    def __init__(self, alias: str, data: dict[str, Any]) -> None:
        self.alias = alias
        self.settings: HardenSettings = harden_settings(data.get("settings"), where=alias)
        self.forwarded = {int(k): int(v) for k, v in (data.get("forwarded") or {}).items()}
        self.probe_keys = [Path(p) for p in data.get("probe_keys") or []]


@pytest.fixture(scope="session")
def _bulwark_meta(pytestconfig: pytest.Config) -> dict[str, dict[str, Any]]:
    path = pytestconfig.getoption("bulwark_hosts")
    return json.loads(Path(path).read_text()) if path else {}


_states: dict[str, HostState] = {}


def alias_of(host: Any) -> str:
    return str(host.backend.hostname)


@pytest.fixture(scope="module")
def meta(host: Any, _bulwark_meta: dict[str, dict[str, Any]]) -> HostMeta:
    alias = alias_of(host)
    return HostMeta(alias, _bulwark_meta.get(alias, {}))


@pytest.fixture(scope="module")
def expected(meta: HostMeta) -> HardenSettings:
    """The host's declared settings: what every control compares against."""
    return meta.settings


@pytest.fixture(scope="module")
def state(host: Any, meta: HostMeta) -> HostState:
    """The host's snapshot, read once per host for the whole session."""
    alias = alias_of(host)
    if alias not in _states:
        _states[alias] = HostState(host, meta.settings.deploy_user)
    return _states[alias]


@pytest.fixture(scope="module")
def endpoint(host: Any, meta: HostMeta, pytestconfig: pytest.Config) -> Endpoint:
    """Where the host is reached from outside, resolved by OpenSSH from the same config and the
    same `--hosts` spec testinfra connects with."""
    spec = getattr(host.backend, "host", None)  # testinfra's HostSpec for ssh:// hosts
    return resolve_endpoint(
        alias_of(host),
        pytestconfig.getoption("ssh_config"),
        user=getattr(spec, "user", None),
        port=getattr(spec, "port", None),
        identity=pytestconfig.getoption("ssh_identity_file", default=None),
        forwarded=meta.forwarded,
        probe_keys=meta.probe_keys,
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Probes from outside run first, while the host's snapshot is read in the background (see
    test_probes.py); the inside controls follow; the ban probe runs last of all."""

    def rank(item: pytest.Item) -> int:
        # By module name: node ids are relative to wherever the rootdir happens to be.
        module = getattr(getattr(item, "module", None), "__name__", "")
        if not module.startswith("bulwark.verify.suite."):
            return 1
        if item.get_closest_marker("ban_probe"):
            return 2
        return 0 if module.endswith(".test_probes") else 1

    items.sort(key=rank)


def _event(config: pytest.Config, **event: object) -> None:
    """Progress for the caller (bulwark verify's live view), as it happens."""
    path = config.getoption("bulwark_events", default=None)
    if path:
        with Path(path).open("a", encoding="utf-8") as events:
            events.write(json.dumps(event) + "\n")


def pytest_collection_finish(session: pytest.Session) -> None:
    """How many controls each host will run (after -k deselected the others)."""
    counts: dict[str, int] = {}
    for item in session.items:
        if _control_of(item) is not None:
            counts[_host_of(item)] = counts.get(_host_of(item), 0) + 1
    for host, count in counts.items():
        _event(session.config, host=host, total=count)


def _control_of(item: pytest.Item) -> str | None:
    mark = item.get_closest_marker(MARK)
    return str(mark.args[0]) if mark else None


def _host_of(item: pytest.Item) -> str:
    params = getattr(item, "callspec", None)
    host = params.params.get("_testinfra_host") if params else None
    return alias_of(host) if host is not None else "local"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    control_id = _control_of(item)
    if control_id is None:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _record(item, control_id, report, call)


def _record(
    item: pytest.Item, control_id: str, report: pytest.TestReport, call: pytest.CallInfo[None]
) -> None:
    meta = CONTROLS[control_id]
    status: str
    evidence = reason = None
    if report.passed:
        status = "pass"
    elif report.skipped:
        status = "not-applicable"
        reason = _skip_reason(report)
    elif report.when == "setup" or (
        call.excinfo and not call.excinfo.errisinstance(AssertionError)
    ):
        status = "error"
        reason = _exception_line(call)
    else:
        status = "fail"
        evidence = _exception_line(call)
    result = ControlResult(
        id=control_id,
        title=meta.title,
        family=meta.family,
        status=status,  # type: ignore[arg-type]
        rationale=meta.rationale,
        references=meta.references,
        evidence=evidence,
        reason=reason,
        seconds=round(report.duration, 3),
    )
    run = item.config.stash[REPORT_KEY]
    name = _host_of(item)
    try:
        host = run.host(name)
    except KeyError:
        host = HostResult(host=name)
        run.hosts.append(host)
    host.controls.append(result)
    _event(item.config, host=name, control=control_id, status=status)


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ").removeprefix(NA_PREFIX)


def _exception_line(call: pytest.CallInfo[None]) -> str:
    if call.excinfo is None:
        return "unknown"
    text = str(call.excinfo.value).strip()
    # pytest's assertion rewriting appends its own explanation after the message: keep ours.
    text = text.split("\nassert ", 1)[0].strip()
    return text or call.excinfo.typename


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("bulwark_json", default=None)
    if path:
        session.config.stash[REPORT_KEY].write(Path(path))
