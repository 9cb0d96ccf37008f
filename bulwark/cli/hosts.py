"""Host commands: bootstrap (first contact), harden (preview, confirm, apply), verify."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bulwark.cli.app import app
from bulwark.cli.cloud import TEXT_JSON, JsonFlag, OutFile, TextOrJson
from bulwark.cli.live import Board, board
from bulwark.cli.output import (
    Output,
    checked,
    err,
    error_line,
    escape,
    format_help,
    handles_errors,
    progress,
    real,
    stamp,
    writable,
)
from bulwark.errors import ConfigError, ExitCode

if TYPE_CHECKING:
    from rich.console import Console

    from bulwark.hosts import bootstrap as bs
    from bulwark.hosts.harden import HardenRun
    from bulwark.hosts.inventory import InventoryHost
    from bulwark.policy.evaluate import Audit
    from bulwark.settings.hosts import DeployUser
    from bulwark.verify.results import HostResult

Yes = Annotated[
    bool,
    typer.Option(
        "--yes", "-y", help="Apply without the preview and the question (what CI passes)."
    ),
]


def can_ask() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def confirm_or_refuse(yes: bool, action: str) -> bool:
    """True when the run may go ahead without asking; False when it should preview and ask.
    Without a terminal and without --yes it refuses, as `pulumi up` does."""
    if yes:
        return True
    if not can_ask():
        raise ConfigError(
            f"{action} changes hosts and there is no terminal to ask on: pass --yes to apply "
            "(or --dry to preview)"
        )
    return False


def ask(question: str) -> bool:
    """The one question before a change; anything but yes is no."""
    return read_line(f"{question} [y/N]: ").strip().lower() in ("y", "yes")


def read_line(prompt: str, *, hidden: bool = False) -> str:
    """One line from the terminal, with echo off when `hidden`.

    Not input()/getpass: they block in read(2) from C, so a Ctrl-C that arrives between the
    prompt being written and the read starting is flagged and never acted on, and the command
    hangs. Waiting in short select() rounds lets Python's handler run between rounds."""
    import select  # noqa: PLC0415
    import termios  # noqa: PLC0415

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd) if hidden else None
    try:
        if saved is not None:  # echo off before the prompt: nothing typed after it is shown
            quiet = termios.tcgetattr(fd)
            quiet[3] &= ~termios.ECHO
            termios.tcsetattr(fd, termios.TCSADRAIN, quiet)
        sys.stderr.write(prompt)
        sys.stderr.flush()
        while not select.select([fd], [], [], 0.2)[0]:
            pass
        line = sys.stdin.readline()
    finally:
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
            sys.stderr.write("\n")
    if not line:
        raise typer.Abort  # end of input (Ctrl-D) is a no, said as "interrupted"
    return line.rstrip("\n")


def trust_line(path: Path) -> None:
    """Every command that uses the host trust store says which one (stderr)."""
    err.print(f"trust store: {escape(str(path))}", highlight=False, soft_wrap=True)


def _password_from_env(env_var: str | None) -> str | None:
    if env_var is None:
        return None
    value = os.environ.get(env_var)
    if value is None:
        raise ConfigError(f"--password-env {env_var}: that variable is not set; export it first")
    if any(c in value for c in "\n\r\0"):
        raise ConfigError(
            f"--password-env {env_var}: the password holds a line break or NUL, which sudo "
            "cannot read as one line: set the variable to the password alone"
        )
    return value


def _can_ask_password() -> None:
    if not sys.stdin.isatty():
        raise ConfigError("--ask-password needs a terminal: use --password-env VAR in automation")


TRUST_HELP = (
    "Where known_hosts and access proofs are kept (default: BULWARK_TRUST_DIR, else hosts/ of "
    "the project around this folder)."
)


@app.command()
@handles_errors
def bootstrap(
    host: Annotated[str, typer.Argument(help="Address of the new host.", metavar="HOST")],
    port: Annotated[int, typer.Option(help="SSH port (1-65535).", metavar="PORT")] = 22,
    user: Annotated[
        str, typer.Option(help="First-contact user: root or a sudo-capable user.", metavar="USER")
    ] = "root",
    key: Annotated[
        Path | None, typer.Option(help="Private key for the first contact.", metavar="FILE")
    ] = None,
    ask_password: Annotated[
        bool, typer.Option("--ask-password", help="Prompt for the first-contact password.")
    ] = False,
    password_env: Annotated[
        str | None,
        typer.Option(
            help="Name of an environment variable holding the first-contact password.",
            metavar="VAR",
        ),
    ] = None,
    deploy_user: Annotated[
        str, typer.Option(help="Deploy user to create.", metavar="USER")
    ] = "deploy",
    deploy_key: Annotated[
        Path | None,
        typer.Option(
            help="Operator private key for the deploy user (created if missing).", metavar="FILE"
        ),
    ] = None,
    trust_dir: Annotated[Path | None, typer.Option(help=TRUST_HELP, metavar="DIR")] = None,
    yes: Yes = False,
    fmt: TextOrJson = None,
    as_json: JsonFlag = False,
    out_file: OutFile = None,
) -> None:
    """First contact with a new host: deploy user, operator key, sudo; proven in a new login.

    On a terminal it shows what it will do and asks first; --yes skips that.

    Example: bulwark bootstrap 203.0.113.10 --key ~/.ssh/provider_ed25519 --yes"""
    result_to = Output.choose(fmt, as_json, out_file, TEXT_JSON)
    # Everything is checked, and the name resolved and judged not to be this machine, before a
    # password is asked for, a key is created or a connection is opened.
    with progress() as say:  # the first line comes before SSH and pydantic load
        say(f"bootstrap {host}: checking the inputs")
        from bulwark.dirs import trust_dir as default_trust_dir  # noqa: PLC0415
        from bulwark.hosts import bootstrap as bs  # noqa: PLC0415 - SSH loads only for host commands
        from bulwark.hosts.keys import ensure_key, hardened_sshd_refuses, load_key  # noqa: PLC0415
        from bulwark.hosts.safety import vet  # noqa: PLC0415
        from bulwark.hosts.ssh import Login, Target  # noqa: PLC0415
        from bulwark.settings.endpoints import (  # noqa: PLC0415
            check_host,
            check_login_user,
            check_path,
            check_port,
        )
        from bulwark.settings.hosts import deploy_user as make_deploy_user  # noqa: PLC0415

        target = Target(checked("host", check_host, host), checked("--port", check_port, port))
        checked("--user", check_login_user, user)
        paths = (("--key", key), ("--deploy-key", deploy_key), ("--trust-dir", trust_dir))
        for option, path in paths:
            if path is not None:
                checked(option, check_path, path)
        trust = trust_dir if trust_dir is not None else default_trust_dir()
        if trust.exists() and not trust.is_dir():
            raise ConfigError(f"--trust-dir {trust} is a file: pass a folder")
        store = bs.TrustStore(trust)
        store.check()
        deploy = make_deploy_user(deploy_user, deploy_key)
        if key is None and password_env is None and not ask_password:
            raise ConfigError(
                "no first-contact credential: pass --key, --ask-password or --password-env"
            )
        first_key = load_key(key) if key else None
        password = _password_from_env(password_env)
        if ask_password and password is None:
            _can_ask_password()
        if deploy.key_path.exists():
            operator_key = load_key(deploy.key_path)
            if weakness := hardened_sshd_refuses(operator_key):
                raise ConfigError(f"--deploy-key {deploy.key_path} {weakness}")
        target = vet(target)
    go_ahead = confirm_or_refuse(yes, "bootstrap")
    trust_line(trust)
    if not go_ahead:
        _preview_bootstrap(f"{user}@{target}", store.known_hosts.path, deploy)
    if ask_password and password is None:
        password = read_line(f"password for {user}: ", hidden=True)
    first = Login(user, key=first_key, password=password)
    operator_key, created = ensure_key(deploy.key_path)
    if created:
        err.print(f"created operator key {deploy.key_path} (0600) and {deploy.key_path}.pub")
    with board("bootstrap", [str(target)]) as shown:
        shown.total(str(target), bs.STEPS)
        report = bs.bootstrap(target, first, deploy, operator_key, store, progress=shown.say)
        shown.finish(str(target))
    result_to.result(
        report.as_dict,
        lambda console: print_bootstrap(console, report),
        "changed" if report.changes else "nothing changed",
    )


def _preview_bootstrap(where: str, known_hosts: Path, deploy: DeployUser) -> None:
    """What bootstrap will do, then the question; "no" ends the command with nothing done."""
    err.print(
        f"bootstrap will, on {where}:\n"
        f"  - pin the host key it is shown into {known_hosts} (first contact; a "
        "changed key is refused)\n"
        f"  - create user {deploy.name} with passwordless sudo, and install "
        f"{deploy.key_path}.pub{' (a new key)' if not deploy.key_path.exists() else ''} "
        "as its only key\n"
        f"  - prove in a fresh login that {deploy.name} gets in by key and runs sudo -n",
        highlight=False,
        soft_wrap=True,
    )
    if not ask("Bootstrap this host?"):
        err.print("nothing was done", highlight=False)
        raise typer.Exit(int(ExitCode.OK))


def print_bootstrap(console: Console, report: bs.BootstrapReport) -> None:
    verb = "changed" if report.changes else "already bootstrapped, nothing changed"
    console.print(f"[bold]{report.target}[/bold] (connected as {report.connected_as}): {verb}")
    for change in report.changes:
        console.print(f"  [green]+[/green] {change}")
    if report.proof:
        console.print(
            f"  [green]✓[/green] proved: {report.proof.user} logs in with key "
            f"{report.proof.key_fingerprint} and runs sudo -n (host key "
            f"{report.proof.host_key_fingerprint})",
            highlight=False,
        )


@app.command()
@handles_errors
def harden(
    inventory: Annotated[
        Path, typer.Argument(help="pyinfra inventory, e.g. hosts/prod.py.", metavar="INVENTORY")
    ],
    limit: Annotated[
        str | None,
        typer.Option(help="Only these hosts or groups (comma-separated).", metavar="HOSTS"),
    ] = None,
    dry: Annotated[
        bool, typer.Option("--dry", help="Only preview what would change; change nothing.")
    ] = False,
    diff: Annotated[
        bool, typer.Option("--diff", help="Show the files that change, with their differences.")
    ] = False,
    yes: Yes = False,
    fmt: TextOrJson = None,
    as_json: JsonFlag = False,
    out_file: OutFile = None,
) -> None:
    """Harden hosts with pyinfra: SSH, firewall, fail2ban, updates, kernel (lockout-safe).

    On a terminal it previews per host what will change, then asks; --yes applies without
    asking (required without a terminal); --dry previews only. pyinfra's own output goes to a
    log file whose path is printed.

    Example: bulwark harden hosts/prod.py --limit web --yes --json --out harden.json"""
    result_to = Output.choose(fmt, as_json, out_file, TEXT_JSON)
    if not inventory.is_file():  # said before pyinfra and SSH load (1.5 s on a small machine)
        raise ConfigError(f"inventory {inventory} does not exist: pass a pyinfra inventory file")
    from bulwark.hosts import harden as hd  # noqa: PLC0415 - pyinfra only for harden
    from bulwark.hosts.harden import new_log  # noqa: PLC0415

    hosts = hd.prepare(inventory, limit)
    go_ahead = dry or confirm_or_refuse(yes, "harden")
    for folder in sorted({str(h.known_hosts.parent) for h in hosts}):
        trust_line(Path(folder))
    log = new_log()
    err.print(f"pyinfra log: {escape(str(log))}", highlight=False, soft_wrap=True)
    names = [h.name for h in hosts]
    if dry or not go_ahead:
        preview = _run_with_progress(inventory, hosts, limit, diff, log, dry=True)
        if dry:
            result_to.result(
                preview.as_dict,
                lambda console: print_harden(console, preview),
                f"{n_operations(preview.changed)} would change {', '.join(names)}",
            )
            return
        print_harden(err, preview)
        if preview.changed == 0:
            err.print("nothing to change: every host is already hardened", highlight=False)
            result_to.result(preview.as_dict, lambda console: None, "nothing to change")
            return
        if not ask(f"Apply these changes to {len(hosts)} host(s)?"):
            err.print("nothing was changed", highlight=False)
            raise typer.Exit(int(ExitCode.OK))
    totals = {} if go_ahead else {h.name: len(h.changed) + h.unchanged for h in preview.hosts}
    run = _run_with_progress(inventory, hosts, limit, diff, log, dry=False, totals=totals)
    verdict = f"{'PASS' if run.ok else 'FAIL'}: {n_operations(run.changed)} changed"
    result_to.result(run.as_dict, lambda console: print_harden(console, run), verdict)
    if not run.ok:
        failed = [h.name for h in run.hosts if h.failed]
        error_line(
            f"harden failed on {', '.join(failed)}: sshd changes that were not confirmed revert "
            f"by themselves; pyinfra's log: {run.log}"
        )
        err.print(escape(run.detail), highlight=False, soft_wrap=True)
        raise typer.Exit(int(ExitCode.ERROR))


def _run_with_progress(
    inventory: Path,
    hosts: list[InventoryHost],
    limit: str | None,
    diff: bool,
    log: Path,
    *,
    dry: bool,
    totals: dict[str, int] | None = None,
) -> HardenRun:
    """One pyinfra pass with a live view per host on a terminal, timestamped lines otherwise."""
    from bulwark.hosts.harden import Tracker, run_harden  # noqa: PLC0415

    names = [h.name for h in hosts]
    tracker = Tracker(names)
    started = time.monotonic()
    what = "previewing" if dry else "hardening"

    def view() -> str:
        elapsed = time.monotonic() - started
        where = f"{tracker.area}: {tracker.operation}" if tracker.operation else tracker.phase
        lines = [f"{what} · {tracker.phase} · {elapsed:4.0f} s"]
        for name in names:
            done = tracker.done.get(name, 0)
            changed = tracker.changed.get(name, 0)
            errors = tracker.errors.get(name, 0)
            tail = f", {errors} failed" if errors else ""
            of = f" of {totals[name]}" if totals and name in totals else ""
            lines.append(f"  {name}: {done}{of} operations done, {changed} changed{tail}")
        lines.append(f"  now: {where}")
        return "\n".join(lines)

    if err.is_terminal:
        from rich.live import Live  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        class Ticking:
            """Re-drawn on every refresh, so the elapsed time runs between pyinfra's lines."""

            def __rich__(self) -> Text:
                return Text(view())

        def on_line(line: str) -> None:
            tracker.feed(line)  # the Live view re-reads the tracker on its own refreshes

        with Live(Ticking(), console=real(err), refresh_per_second=4, transient=True):
            return run_harden(
                inventory, hosts, limit=limit, dry=dry, diff=diff, on_line=on_line, log=log
            )

    last_area = ""

    def on_plain_line(line: str) -> None:
        nonlocal last_area
        phase = tracker.phase
        if not tracker.feed(line):
            return
        if tracker.phase != phase:
            err.print(f"{stamp()} {what}: {tracker.phase}", highlight=False, soft_wrap=True)
        if tracker.area and tracker.area != last_area:
            last_area = tracker.area
            done = ", ".join(f"{n} {tracker.done.get(n, 0)} done" for n in names)
            err.print(f"{stamp()} {what}: {tracker.area} ({done})", highlight=False, soft_wrap=True)

    return run_harden(
        inventory, hosts, limit=limit, dry=dry, diff=diff, on_line=on_plain_line, log=log
    )


def n_operations(count: int) -> str:
    return f"{count} operation{'' if count == 1 else 's'}"


DIFF_LINES = 30  # per file in the summary; the whole diff is in the log


def print_harden(console: Console, run: HardenRun) -> None:
    """Per host: the operations that change (preview) or changed, by area; the guard; time."""
    verb = "would change" if run.dry else "changed"
    for host in run.hosts:
        colour = "red" if host.failed else ("yellow" if host.changed else "green")
        console.print(
            f"[bold]{escape(host.name)}[/bold]: [{colour}]{n_operations(len(host.changed))} {verb}"
            f"[/{colour}]" + (f", {len(host.failed)} failed" if host.failed else ""),
            highlight=False,
        )
        areas: dict[str, list[str]] = {}
        for change in host.changed:
            areas.setdefault(change.area, []).append(change.operation)
        for area, operations in areas.items():
            console.print(f"  {escape(area)}: {len(operations)}", highlight=False)
            for operation in operations:
                mark = "~" if run.dry else "+"
                console.print(f"    [yellow]{mark}[/yellow] {escape(operation)}", highlight=False)
        for failure in host.failed:
            console.print(
                f"  [red]✗ {escape(failure.area)}: {escape(failure.operation)}[/red]",
                highlight=False,
            )
        for file in host.files:
            console.print(f"  file: {file.action} {escape(file.path)}", highlight=False)
            for line in file.diff[:DIFF_LINES]:
                colour = {"+": "green", "-": "red"}.get(line[:1], "dim")
                console.print(f"    [{colour}]{escape(line)}[/{colour}]", highlight=False)
            if len(file.diff) > DIFF_LINES:
                console.print(f"    … {len(file.diff) - DIFF_LINES} more lines in the log")
        if not run.dry:
            console.print(f"  lockout guard: {host.guard}", highlight=False)
    console.print(
        f"{'preview' if run.dry else 'run'} took {run.seconds:.0f} s; log {escape(str(run.log))}",
        highlight=False,
        soft_wrap=True,  # a path is never broken across lines, on a terminal either
    )


VERIFY_FORMATS = ("text", "json", "junit")


@app.command()
@handles_errors
def verify(
    target: Annotated[
        str,
        typer.Argument(
            help="A pyinfra inventory (hosts/prod.py), or user@host[:port].", metavar="TARGET"
        ),
    ],
    limit: Annotated[
        str | None,
        typer.Option(
            help="Only these inventory hosts or groups (comma-separated).", metavar="HOSTS"
        ),
    ] = None,
    key: Annotated[
        Path | None, typer.Option(help="SSH key for user@host targets.", metavar="FILE")
    ] = None,
    known_hosts: Annotated[
        Path | None,
        typer.Option(
            help="Pinned host keys for user@host targets (default: known_hosts in the trust "
            "store bootstrap wrote).",
            metavar="FILE",
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", "-f", help=format_help(*VERIFY_FORMATS), metavar="FORMAT"),
    ] = None,
    as_json: JsonFlag = False,
    out_file: OutFile = None,
    junit: Annotated[
        Path | None,
        typer.Option(help="Also write JUnit XML here (beside --out).", metavar="FILE"),
    ] = None,
    probe_key: Annotated[
        list[Path] | None,
        typer.Option(
            help="More keys the root-login probe tries (e.g. the provider's).", metavar="FILE"
        ),
    ] = None,
    ban_probe: Annotated[
        bool, typer.Option(help="Also prove fail2ban bans a brute-forcer (then unbans).")
    ] = False,
    select: Annotated[
        str | None,
        typer.Option("-k", help="Only controls matching this pytest expression.", metavar="EXPR"),
    ] = None,
) -> None:
    """Verify hosts: controls from inside (testinfra), probes from outside, pinned host keys.

    Exit 0 when everything applicable passes, 1 when a control fails, 2 on bad input or a host
    that cannot be reached (the others are verified all the same).

    Example: bulwark verify hosts/prod.py --json --out results.json --junit results.xml"""
    result_to = Output.choose(fmt, as_json, out_file, VERIFY_FORMATS)
    # The first line comes before pyinfra, paramiko and pytest load; every input is checked
    # before any host is contacted.
    with progress() as say:
        say(f"verify {target}: checking the inputs")
        from bulwark.dirs import trust_dir  # noqa: PLC0415
        from bulwark.settings.endpoints import check_path  # noqa: PLC0415
        from bulwark.verify import run as verify_run  # noqa: PLC0415 - keeps other commands fast

        writable(junit, "--junit")
        if known_hosts is not None:
            checked("--known-hosts", check_path, known_hosts)
        path = Path(target)
        inventory = path if path.suffix == ".py" or path.is_file() else None
        if inventory is not None:
            targets = verify_run.from_inventory(inventory, limit)
        else:
            pinned = known_hosts if known_hosts is not None else trust_dir() / "known_hosts"
            targets = [verify_run.from_spec(target, key=key, known_hosts=pinned)]
        verify_run.preflight(targets, probe_keys=probe_key, select=select)
        for folder in sorted({str(t.known_hosts.parent) for t in targets}):
            trust_line(Path(folder))
    with board("verify", [t.alias for t in targets], "controls") as shown:
        report = verify_run.run_verify(
            targets,
            junit_out=junit,
            ban_probe=ban_probe,
            probe_keys=probe_key,
            select=select,
            inventory=inventory,
            on_event=lambda event: _show_verify_event(shown, event),
        )
    unreached = [h for h in report.hosts if h.controls[0].status == "error"]
    reached = [h for h in report.hosts if h not in unreached]

    def draw(console: Console) -> None:
        for host in reached:
            print_host_result(console, host)

    if result_to.fmt == "junit":
        result_to.deliver(report.to_junit(), "JUnit XML")
    else:
        totals = [h.summary for h in report.hosts]
        verdict = (
            f"{'PASS' if report.ok else 'FAIL'}: {sum(s['pass'] for s in totals)} passed, "
            f"{sum(s['fail'] for s in totals)} failed, {sum(s['error'] for s in totals)} errors"
        )
        if result_to.fmt == "json":
            result_to.deliver(report.to_json(), verdict)
        else:
            result_to.result(dict, draw, verdict)
    for host in unreached:
        error_line(f"{host.host}: {host.controls[0].reason}")
    if unreached:
        raise typer.Exit(int(ExitCode.ERROR))
    if not report.ok:
        raise typer.Exit(int(ExitCode.FAILED_CHECKS))


def _show_verify_event(shown: Board, event: dict[str, object]) -> None:
    host = str(event["host"])
    if "total" in event:
        shown.total(host, int(str(event["total"])) + 1)  # and the host-key control, done first
    elif "control" in event:
        status = str(event["status"])
        shown.tick(host, str(event["control"]), failed=status in {"fail", "error"})
        if event["control"] == "trust-host-key-pinned" and status != "pass":
            shown.finish(host)  # nothing else runs on a host whose key is not the pinned one
    elif "now" in event:
        shown.note(host, str(event["now"]))


def print_host_result(console: Console, host: HostResult) -> None:
    s = host.summary
    colour = "green" if host.ok else "red"
    console.print(
        f"[bold]{escape(host.host)}[/bold]: [{colour}]{s['pass']} passed, {s['fail']} failed, "
        f"{s['error']} errors[/{colour}], {s['not-applicable']} not applicable"
    )
    for result in host.controls:
        if result.status in ("fail", "error"):
            detail = result.evidence or result.reason or ""
            console.print(
                f"  [red]✗ {result.id}[/red] {escape(result.title)}: {escape(detail)}",
                highlight=False,
            )


def print_audit_summary(console: Console, audit: Audit) -> None:
    """The audit's summary: the verdict, then one line per section, then what fails."""
    s = audit.summary
    colour = "green" if audit.ok else "red"
    console.print(
        f"[bold]audit[/bold]: [{colour}]{'PASS' if audit.ok else 'FAIL'}[/{colour}] "
        f"{s['pass']} passed, {s['fail']} failed, {s['waived']} waived, {s['error']} errors, "
        f"{s['not-applicable']} not applicable",
        highlight=False,
    )
    for section in audit.sections:
        n = section.summary
        console.print(
            f"  {section.name}: {n['pass']} passed, {n['fail']} failed, {n['waived']} waived, "
            f"{n['error']} errors, {n['not-applicable']} not applicable",
            highlight=False,
        )
    for section, control in audit.failing:
        console.print(
            f"  [red]✗ {section.name}: {control.id}[/red] {control.title}", highlight=False
        )
