"""The `bulwark` command: thin; library errors become exit codes here and only here."""

from __future__ import annotations

import functools
import json
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from bulwark.errors import BulwarkError, ConfigError, ExitCode
from bulwark.settings.endpoints import check_login_user, check_path

# Every command imports what it uses when it runs (the noqa PLC0415 lines below): `bulwark
# --help` and the cloud commands load no SSH, pyinfra or host code, and the host commands no
# Pulumi.
if TYPE_CHECKING:
    from bulwark.cloud.plan import Plan
    from bulwark.hosts import bootstrap as bs
    from bulwark.lab import vm as lab
    from bulwark.policy.evaluate import Audit
    from bulwark.verify.results import HostResult

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="bulwark",
    help="Provision a production platform, harden its hosts, and prove it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
lab_app = typer.Typer(help="Disposable local VMs that look like a provider's fresh VPS.")
app.add_typer(lab_app, name="lab")


def _console(*, stderr: bool = False) -> Console:
    """A terminal gets rich's usual console; a pipe or a file gets lines that are never wrapped
    (a wrapped `serviceAccount:...` or evidence line is a broken one). NO_COLOR is honoured by
    rich either way."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=1_000_000, soft_wrap=True)


out = _console()
err = _console(stderr=True)

# What `bulwark --version` reports beside bulwark itself: the engines it drives.
ENGINES = ("pulumi", "pulumi-gcp", "pulumi-policy", "pyinfra", "pytest-testinfra", "paramiko")


def _version(value: bool) -> None:
    """`--version`: bulwark's version and its engines', read from package metadata (nothing
    is imported)."""
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    out.print(f"bulwark {of('bulwark')}", highlight=False)
    for name in ENGINES:
        out.print(f"  {name} {of(name)}", highlight=False)
    raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_version,
            help="Print bulwark's version and those of pulumi, pulumi-gcp, pyinfra and testinfra.",
        ),
    ] = False,
) -> None:
    """Provision a production platform, harden its hosts, and prove it."""


def error_line(message: str) -> None:
    """The one line every failure a user can cause ends in."""
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


_said: list[str] = []  # what the run already told the user it ended with


def interrupted_line(note: str = "") -> None:
    err.print(f"[yellow]interrupted[/yellow]{escape(note)}", highlight=False, soft_wrap=True)
    _said.append("interrupted")


def handles_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn library errors into one red line and a distinct exit code; Ctrl-C into 130."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except BulwarkError as exc:
            error_line(str(exc))
            raise typer.Exit(int(exc.exit_code)) from None
        except (KeyboardInterrupt, typer.Abort):
            # typer turns Ctrl-C at a prompt into Abort.
            interrupted_line()
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None

    return wrapper


T = TypeVar("T")


def checked(option: str, check: Callable[[object], T], value: object) -> T:
    """`check(value)`, its ValueError turned into a ConfigError that names the option."""
    try:
        return check(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None


def writable(path: Path | None, option: str) -> Path | None:
    """An output file the command will write at the end: checked before any work starts."""
    if path is None:
        return None
    checked(option, check_path, path)
    parent = path.parent
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a directory: name a file to write")
    if not parent.is_dir():
        raise ConfigError(f"{option} {path}: folder {parent} does not exist: create it first")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{option} {path} is not writable: pick a file you may write")
    return path


@contextmanager
def progress(enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr whose text follows the long steps; silent when not a terminal."""
    if not enabled or not err.is_terminal:
        yield lambda msg: err.print(f"[dim]… {msg}[/dim]", highlight=False)
        return
    with err.status("starting") as status:
        yield status.update


def emit_json(data: object) -> None:
    out.print_json(json.dumps(data, default=str))


# ----------------------------------------------------------------------------- lab

Distro = Annotated[str, typer.Option(help="Debian release of the guest: bookworm or trixie.")]
AuthOpt = Annotated[
    str, typer.Option("--auth", help="How root gets in: 'key' (injected) or 'password'.")
]


@lab_app.command("up")
@handles_errors
def lab_up(
    distro: Distro = "bookworm",
    auth: AuthOpt = "key",
    name: Annotated[str, typer.Option(help="VM name (default: distro + random suffix).")] = "",
    forward: Annotated[
        list[int] | None,
        typer.Option("--forward", "-f", help="Guest TCP port to forward to a free local port."),
    ] = None,
    memory: Annotated[int, typer.Option(help="Guest memory in MiB.")] = 1024,
    cpus: Annotated[int, typer.Option(help="Guest CPUs.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the VM as JSON.")] = False,
) -> None:
    """Boot a lab VM (fresh VPS) and leave it running until `bulwark lab down`."""
    from bulwark.lab import vm as lab  # noqa: PLC0415 - the lab loads only for lab commands
    from bulwark.lab.tools import ensure_tools  # noqa: PLC0415

    spec = lab.VMSpec(name, distro, auth, tuple(forward or ()), memory, cpus)  # type: ignore[arg-type]
    ensure_tools()
    try:
        with progress() as say:
            vm = lab.start(spec, detach=True, progress=say)
    except KeyboardInterrupt:
        interrupted_line(": the VM being started was stopped and its files removed")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    if as_json:
        emit_json(_vm_dict(vm))
        return
    out.print(f"[green]{vm.name}[/green] is up: ssh on 127.0.0.1:{vm.ssh_port} ({vm.accel})")
    for guest, host in vm.forwards.items():
        out.print(f"  guest port {guest} -> 127.0.0.1:{host}")
    if vm.auth == "password":
        out.print(f"  root password in {vm.password_file} (mode 0600)")
    out.print(f"  root key {vm.root_key_path}; `bulwark lab ssh {vm.name}` logs in")


def _vm_dict(vm: lab.LabVM) -> dict[str, object]:
    return {
        "name": vm.name,
        "distro": vm.distro,
        "auth": vm.auth,
        "pid": vm.pid,
        "accel": vm.accel,
        "ssh": {"host": "127.0.0.1", "port": vm.ssh_port},
        "forwards": {str(g): h for g, h in vm.forwards.items()},
        "root_key": str(vm.root_key_path),
        "root_password_file": str(vm.password_file) if vm.auth == "password" else None,
        "known_hosts": str(vm.known_hosts),
        "host_key_fingerprints": vm.host_key_fingerprints,
        "directory": str(vm.directory),
    }


@lab_app.command("list")
@handles_errors
def lab_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the running lab VMs."""
    from bulwark.lab import vm as lab  # noqa: PLC0415

    vms = lab.running()
    if as_json:
        emit_json([_vm_dict(vm) for vm in vms])
        return
    if not vms:
        out.print("no lab VMs running")
        return
    from rich.table import Table  # noqa: PLC0415

    table = Table("name", "distro", "auth", "ssh", "forwards", "accel", "pid")
    for vm in vms:
        fwd = ", ".join(f"{g}->{h}" for g, h in vm.forwards.items())
        table.add_row(
            vm.name, vm.distro, vm.auth, f"127.0.0.1:{vm.ssh_port}", fwd, vm.accel, str(vm.pid)
        )
    out.print(table)


@lab_app.command("down")
@handles_errors
def lab_down(
    names: Annotated[list[str] | None, typer.Argument(help="VMs to stop.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Stop every lab VM.")] = False,
) -> None:
    """Stop lab VMs and remove their files."""
    from bulwark.lab import vm as lab  # noqa: PLC0415

    if not names and not all_:
        raise ConfigError("name the VMs to stop, or pass --all")
    targets = lab.running() if all_ else [lab.find(n) for n in names or []]
    for vm in targets:
        lab.stop(vm)
        out.print(f"stopped {vm.name}")


@lab_app.command("ssh", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@handles_errors
def lab_ssh(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The lab VM.")],
    user: Annotated[str, typer.Option(help="Remote user.")] = "root",
    key: Annotated[
        Path | None, typer.Option(help="Private key (default: the VM's root key).")
    ] = None,
) -> None:
    """Open ssh to a lab VM (extra arguments are the remote command)."""
    from bulwark.hosts.keys import load_key  # noqa: PLC0415
    from bulwark.lab import vm as lab  # noqa: PLC0415

    checked("--user", check_login_user, user)
    if key is not None:
        load_key(key)
    vm = lab.find(name)
    cmd = [
        "ssh", "-p", str(vm.ssh_port), "-i", str(key or vm.root_key_path),
        "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={vm.known_hosts}",
        "-o", "StrictHostKeyChecking=accept-new", f"{user}@127.0.0.1", *ctx.args,
    ]  # fmt: skip
    os.execvp("ssh", cmd)  # noqa: S606 - replaces this process with the user's ssh client


# ----------------------------------------------------------------------------- hosts


def _password_from_env(env_var: str | None) -> str | None:
    if env_var is None:
        return None
    value = os.environ.get(env_var)
    if value is None:
        raise ConfigError(f"--password-env {env_var}: that variable is not set; export it first")
    return value


def _can_ask_password() -> None:
    if not sys.stdin.isatty():
        raise ConfigError("--ask-password needs a terminal: use --password-env VAR in automation")


@app.command()
@handles_errors
def bootstrap(
    host: Annotated[str, typer.Argument(help="Address of the new host.")],
    port: Annotated[int, typer.Option(help="SSH port (1-65535).")] = 22,
    user: Annotated[
        str, typer.Option(help="First-contact user: root or a sudo-capable user.")
    ] = "root",
    key: Annotated[Path | None, typer.Option(help="Private key for the first contact.")] = None,
    ask_password: Annotated[
        bool, typer.Option("--ask-password", help="Prompt for the first-contact password.")
    ] = False,
    password_env: Annotated[
        str | None,
        typer.Option(help="Name of an environment variable holding the first-contact password."),
    ] = None,
    deploy_user: Annotated[str, typer.Option(help="Deploy user to create.")] = "deploy",
    deploy_key: Annotated[
        Path | None,
        typer.Option(help="Operator private key for the deploy user (created if missing)."),
    ] = None,
    trust_dir: Annotated[
        Path, typer.Option(help="Where known_hosts and access proofs are kept.")
    ] = Path("hosts"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """First contact with a new host: deploy user, operator key, sudo; proven in a new login."""

    # Everything is checked, and the name resolved and judged not to be this machine, before a
    # password is asked for, a key is created or a connection is opened.
    from bulwark.hosts import bootstrap as bs  # noqa: PLC0415 - SSH loads only for host commands
    from bulwark.hosts.keys import ensure_key, hardened_sshd_refuses, load_key  # noqa: PLC0415
    from bulwark.hosts.safety import vet  # noqa: PLC0415
    from bulwark.hosts.ssh import Login, Target  # noqa: PLC0415
    from bulwark.settings.endpoints import check_host, check_port  # noqa: PLC0415
    from bulwark.settings.hosts import deploy_user as make_deploy_user  # noqa: PLC0415

    target = Target(checked("host", check_host, host), checked("--port", check_port, port))
    checked("--user", check_login_user, user)
    for option, path in (("--key", key), ("--deploy-key", deploy_key), ("--trust-dir", trust_dir)):
        if path is not None:
            checked(option, check_path, path)
    if trust_dir.exists() and not trust_dir.is_dir():
        raise ConfigError(f"--trust-dir {trust_dir} is a file: pass a folder (default: hosts)")
    store = bs.TrustStore(trust_dir)
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
    if ask_password and password is None:
        password = str(typer.prompt(f"password for {user}", hide_input=True))
    first = Login(user, key=first_key, password=password)
    operator_key, created = ensure_key(deploy.key_path)
    if created and not as_json:
        out.print(f"created operator key {deploy.key_path} (0600) and {deploy.key_path}.pub")
    with progress() as say:
        say(f"bootstrapping {target}")
        report = bs.bootstrap(target, first, deploy, operator_key, store)
    if as_json:
        emit_json(report.as_dict())
        return
    _print_bootstrap(report)


def _print_bootstrap(report: bs.BootstrapReport) -> None:
    verb = "changed" if report.changes else "already bootstrapped, nothing changed"
    out.print(f"[bold]{report.target}[/bold] (connected as {report.connected_as}): {verb}")
    for change in report.changes:
        out.print(f"  [green]+[/green] {change}")
    if report.proof:
        out.print(
            f"  [green]✓[/green] proved: {report.proof.user} logs in with key "
            f"{report.proof.key_fingerprint} and runs sudo -n (host key "
            f"{report.proof.host_key_fingerprint})",
            highlight=False,
        )


# ----------------------------------------------------------------------------- cloud


@app.command()
@handles_errors
def plan(
    stack: Annotated[
        list[str],
        typer.Option("--stack", "-s", help="Stack: dev, staging or prod; repeat for several."),
    ],
    stacks_dir: Annotated[
        Path, typer.Option(help="Folder of the Pulumi.<stack>.yaml files.")
    ] = Path("stacks"),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the plan as JSON (a list for several stacks).")
    ] = False,
) -> None:
    """Run the Pulumi program under mocks (no credentials, no Pulumi CLI); show what it declares."""
    from bulwark.cloud.plan import run_plan  # noqa: PLC0415 - Pulumi loads only for this command

    # Every stack is planned (and its config validated) before anything is printed.
    results = [run_plan(name, stacks_dir) for name in stack]
    if as_json:
        dicts = [result.as_dict() for result in results]
        emit_json(dicts[0] if len(dicts) == 1 else dicts)
        return
    for result in results:
        _print_plan(result)


def _print_plan(result: Plan) -> None:
    from bulwark.cloud.plan import highlights  # noqa: PLC0415

    s = result.settings
    out.print(
        f"[bold]stack {result.stack}[/bold]: project {s.project}, {s.region}, "
        f"{len(result.resources)} resources",
        highlight=False,
    )
    from rich.table import Table  # noqa: PLC0415
    from rich.tree import Tree  # noqa: PLC0415

    tree = Tree(f"[dim]{s.name}[/dim]")
    nodes: dict[str | None, Tree] = {None: tree}
    for _, res in result.walk():
        label = f"[cyan]{res.type}[/cyan] {res.name}"
        node = nodes.get(res.parent, tree).add(label, highlight=False)
        for path, value in highlights(res):
            node.add(f"[dim]{path}[/dim] = {escape(value)}", highlight=False)
        nodes[res.urn] = node
    out.print(tree)
    outputs = Table("output", "value", title="stack outputs", title_justify="left")
    for key, value in result.outputs.items():
        if key == "connection_budget":
            continue  # shown in full below
        shown = value if isinstance(value, str) else json.dumps(value)
        if "\n" in shown:
            shown = shown.splitlines()[0] + " …"
        style = "yellow" if key in result.secret_outputs else ""
        outputs.add_row(key, escape(shown), style=style)
    out.print(outputs)
    b = result.settings.budget
    out.print(
        f"connection budget: {b.clients.explain()} clients <= {b.pooler.client_capacity} pooler "
        f"capacity; {b.pooler.explain_servers()} <= {b.postgres.usable} usable "
        f"(max_connections {b.postgres.max_connections} - {b.postgres.reserved} reserved): "
        + ("[green]fits[/green]" if b.fits else "[red]does not fit[/red]"),
        highlight=False,
    )


@app.command()
@handles_errors
def audit(
    stack: Annotated[
        list[str] | None,
        typer.Option("--stack", "-s", help="Stack to audit (mock run); repeat for several."),
    ] = None,
    hosts: Annotated[
        list[Path] | None,
        typer.Option("--hosts", help="A `bulwark verify --json` results file; repeatable."),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="text, md, html, json or sarif.")
    ] = "text",
    out_file: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the report here (default stdout).")
    ] = None,
    stacks_dir: Annotated[
        Path, typer.Option(help="Folder of the Pulumi.<stack>.yaml files.")
    ] = Path("stacks"),
    policies_dir: Annotated[
        Path, typer.Option(help="Folder of waivers.yaml and config/<stack>.json.")
    ] = Path("policies"),
    list_rules: Annotated[
        bool, typer.Option("--list-rules", help="Print the rules table (Markdown) and exit.")
    ] = False,
    every_stack: Annotated[
        bool, typer.Option("--all", help="Every stack in --stacks-dir, in one run and report.")
    ] = False,
) -> None:
    """Audit stacks (policy rules on the mock run) and hosts (verify results): one report.

    Exit 0 when nothing fails, 1 when a mandatory control fails, 2 on bad input."""
    from bulwark.audit import run_audit  # noqa: PLC0415
    from bulwark.policy import docs as policy_docs  # noqa: PLC0415
    from bulwark.policy.report import FORMATS, render  # noqa: PLC0415

    if list_rules:
        out.print(policy_docs.rules_table(), markup=False, highlight=False, soft_wrap=True)
        return
    if fmt not in FORMATS:
        raise ConfigError(f"--format: {fmt!r} is not a format: use one of {', '.join(FORMATS)}")
    stacks = list(stack or [])
    if every_stack:
        from bulwark.audit import known_stacks  # noqa: PLC0415

        found = known_stacks(stacks_dir)
        if not found:
            raise ConfigError(f"--all: no Pulumi.<stack>.yaml in {stacks_dir}: pass --stacks-dir")
        stacks += [s for s in found if s not in stacks]
    if not stacks and not hosts:
        raise ConfigError(
            "--stack: nothing to audit: pass --stack S, --all and/or --hosts results.json"
        )
    writable(out_file, "--out")
    result = run_audit(stacks, hosts or [], stacks_dir=stacks_dir, policies_dir=policies_dir)
    text = render(result, fmt)
    if out_file is not None:
        out_file.write_text(text, encoding="utf-8")
        s = result.summary
        colour = "green" if result.ok else "red"
        out.print(
            f"[{colour}]{'PASS' if result.ok else 'FAIL'}[/{colour}]: {s['pass']} passed, "
            f"{s['fail']} failed, {s['waived']} waived, {s['error']} errors, "
            f"{s['not-applicable']} not applicable: {out_file}",
            highlight=False,
        )
    else:
        sys.stdout.write(text)
    if not result.ok:
        raise typer.Exit(int(ExitCode.FAILED_CHECKS))


@app.command()
def settings(
    cloud: Annotated[
        bool, typer.Option("--cloud", help="The cloud stack's settings instead of the hosts'.")
    ] = False,
) -> None:
    """Print the table of hardening settings (defaults and reasons) as Markdown."""
    from bulwark.settings.docs import cloud_settings_table, settings_table  # noqa: PLC0415

    table = cloud_settings_table() if cloud else settings_table()
    out.print(table, markup=False, highlight=False, soft_wrap=True)


@app.command()
@handles_errors
def harden(
    inventory: Annotated[Path, typer.Argument(help="pyinfra inventory, e.g. hosts/prod.py.")],
    limit: Annotated[
        str | None, typer.Option(help="Only these hosts or groups (comma-separated).")
    ] = None,
    dry: Annotated[bool, typer.Option("--dry", help="Show what would change; change nothing.")] = (
        False
    ),
    diff: Annotated[bool, typer.Option("--diff", help="Show file differences.")] = False,
    yes: Annotated[  # accepted now, so that CI command lines stay valid when harden asks
        bool,
        typer.Option(
            "--yes",
            "-y",
            help="Apply without asking (what CI passes). harden does not ask yet; once it "
            "previews and asks on a terminal, --yes skips the question.",
        ),
    ] = False,
) -> None:
    """Harden hosts with pyinfra: SSH, firewall, fail2ban, updates, kernel (lockout-safe)."""
    from bulwark.hosts.harden import run_harden  # noqa: PLC0415 - pyinfra only for harden

    run = run_harden(inventory, limit=limit, dry=dry, diff=diff)
    if dry:
        out.print(f"{len(run.planned)} operations would change {', '.join(run.hosts)}")
        for name in run.planned:
            out.print(f"  [yellow]~[/yellow] {name}", highlight=False)


pooler_app = typer.Typer(help="The transaction pooler: what apps meet behind it.")
app.add_typer(pooler_app, name="pooler")


@pooler_app.command("check")
@handles_errors
def pooler_check(
    dsn: Annotated[
        str,
        typer.Argument(
            help="libpq DSN of the pooler, e.g. 'host=10.0.0.5 port=6432 dbname=app user=app'. "
            "Leave the password out: libpq reads PGPASSWORD or ~/.pgpass."
        ),
    ],
    prepare_threshold: Annotated[
        str, typer.Option(help="The app's psycopg prepare_threshold: a number, or 'none'.")
    ] = "5",
    prepared_max: Annotated[
        int, typer.Option(help="The app's psycopg prepared_max (statement cache size).")
    ] = 100,
    clients: Annotated[
        int, typer.Option(help="Concurrent connections (more than the pool's server ones).")
    ] = 20,
    rounds: Annotated[int, typer.Option(help="Query rounds per connection.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    results: Annotated[
        Path | None,
        typer.Option(help="Also write the finding as verify results, for `bulwark audit --hosts`."),
    ] = None,
) -> None:
    """Prove whether the app's driver settings survive this transaction pooler."""
    from bulwark.pooler import check as pooler  # noqa: PLC0415 - psycopg only for this command
    from bulwark.pooler.report import as_verify_report  # noqa: PLC0415

    writable(results, "--results")
    driver = pooler.Driver(pooler.parse_threshold(prepare_threshold), prepared_max)
    result = pooler.check(dsn, driver=driver, clients=clients, rounds=rounds)
    if results is not None:
        as_verify_report(result).write(results)
    if as_json:
        emit_json(result.as_dict())
    else:
        pgbouncer = f"PgBouncer {result.pgbouncer}" if result.pgbouncer else "PgBouncer ?"
        out.print(
            f"{result.target}: {pgbouncer}, server {result.server_version}, "
            f"libpq {'.'.join(map(str, result.libpq))}",
            highlight=False,
        )
        for run in result.workloads:
            errors = sum(run.errors.values()) + sum(run.refused.values())
            colour = "green" if run.safe else "red"
            out.print(
                f"  {run.label}: [{colour}]{run.ok} ok, {errors} errors[/{colour}] "
                f"({run.clients} clients x {run.rounds} rounds on "
                f"{len(run.server_pids)} server connections, {run.seconds:.1f} s); "
                f"a server connection showed {run.server_prepared} prepared statements",
                highlight=False,
            )
            for kind, count in (run.refused + run.errors).most_common():
                out.print(f"    {count} x {kind}", highlight=False)
        out.print(result.verdict(), highlight=False)
    if not result.safe:
        raise typer.Exit(int(ExitCode.FAILED_CHECKS))


@app.command()
@handles_errors
def verify(
    target: Annotated[
        str, typer.Argument(help="A pyinfra inventory (hosts/prod.py), or user@host[:port].")
    ],
    limit: Annotated[
        str | None, typer.Option(help="Only these inventory hosts or groups (comma-separated).")
    ] = None,
    key: Annotated[Path | None, typer.Option(help="SSH key for user@host targets.")] = None,
    known_hosts: Annotated[
        Path, typer.Option(help="Pinned host keys for user@host targets (bootstrap writes it).")
    ] = Path("hosts/known_hosts"),
    json_out: Annotated[Path | None, typer.Option("--json", help="Write results as JSON.")] = None,
    junit: Annotated[Path | None, typer.Option(help="Write results as JUnit XML.")] = None,
    probe_key: Annotated[
        list[Path] | None,
        typer.Option(help="More keys the root-login probe tries (e.g. the provider's)."),
    ] = None,
    ban_probe: Annotated[
        bool, typer.Option(help="Also prove fail2ban bans a brute-forcer (then unbans).")
    ] = False,
    select: Annotated[
        str | None, typer.Option("-k", help="Only controls matching this pytest expression.")
    ] = None,
) -> None:
    """Verify hosts: controls from inside (testinfra), probes from outside, pinned host keys.

    Exit 0 when everything applicable passes, 1 when a control fails, 2 on bad input or a host
    that cannot be reached (the others are verified all the same)."""
    from bulwark.verify import run as verify_run  # noqa: PLC0415 - keeps other commands fast

    writable(json_out, "--json")
    writable(junit, "--junit")
    checked("--known-hosts", check_path, known_hosts)
    path = Path(target)
    inventory = path if path.suffix == ".py" or path.is_file() else None
    if inventory is not None:
        targets = verify_run.from_inventory(inventory, limit)
    else:
        targets = [verify_run.from_spec(target, key=key, known_hosts=known_hosts)]
    verify_run.preflight(targets, probe_keys=probe_key, select=select)
    with progress() as say:
        say(f"verifying {', '.join(t.alias for t in targets)}")
        report = verify_run.run_verify(
            targets,
            json_out=json_out,
            junit_out=junit,
            ban_probe=ban_probe,
            probe_keys=probe_key,
            select=select,
            inventory=inventory,
        )
    unreached = [h for h in report.hosts if h.controls[0].status == "error"]
    for host in report.hosts:
        if host not in unreached:
            _print_host_result(host)
    for host in unreached:
        error_line(f"{host.host}: {host.controls[0].reason}")
    if unreached:
        raise typer.Exit(int(ExitCode.ERROR))
    if not report.ok:
        raise typer.Exit(int(ExitCode.FAILED_CHECKS))


def _print_host_result(host: HostResult) -> None:
    s = host.summary
    colour = "green" if host.ok else "red"
    out.print(
        f"[bold]{escape(host.host)}[/bold]: [{colour}]{s['pass']} passed, {s['fail']} failed, "
        f"{s['error']} errors[/{colour}], {s['not-applicable']} not applicable"
    )
    for result in host.controls:
        if result.status in ("fail", "error"):
            detail = result.evidence or result.reason or ""
            out.print(
                f"  [red]✗ {result.id}[/red] {escape(result.title)}: {escape(detail)}",
                highlight=False,
            )


@app.command()
@handles_errors
def demo(
    distro: Distro = "bookworm",
    auth: AuthOpt = "key",
    keep: Annotated[bool, typer.Option(help="Leave the VM running afterwards.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Boot a lab VM as a fresh VPS, bootstrap it, harden it, and verify it."""
    from bulwark.demo import run_demo  # noqa: PLC0415 - keeps other commands fast
    from bulwark.lab import vm as lab  # noqa: PLC0415

    spec = lab.VMSpec(distro=distro, auth=auth)  # type: ignore[arg-type]
    try:
        with progress() as say:
            result = run_demo(spec, keep=keep, progress=say)
    except KeyboardInterrupt:
        interrupted_line(": the demo's lab VM was stopped and its files removed")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    if as_json:
        emit_json(result.as_dict())
    else:
        out.print(f"lab VPS [bold]{result.vm.name}[/bold] ({result.vm.distro}, root by {auth})")
        _print_bootstrap(result.first)
        _print_bootstrap(result.second)
        mark = "[green]✓[/green]" if result.host_key_confirmed else "[red]✗[/red]"
        out.print(f"  {mark} pinned host key matches the one the VM printed on its console")
        out.print(f"hardened: {result.harden.changed} operations changed the host")
        mark = "[green]✓[/green]" if result.root_login_refused else "[red]✗[/red]"
        out.print(f"  {mark} root login is refused from outside")
        for host in result.verify.hosts:
            _print_host_result(host)
        _print_audit_summary(result.audit)
        out.print(f"audit report: {result.audit_html}", highlight=False, soft_wrap=True)
        if keep:
            key = shlex.quote(str(result.operator_key))
            out.print(
                f"VM left running: bulwark lab ssh {result.vm.name} --user deploy --key {key}"
            )
    if (
        not result.host_key_confirmed
        or result.second.changes
        or not result.verify.ok
        or not result.audit.ok
    ):
        raise typer.Exit(int(ExitCode.FAILED_CHECKS))


def _print_audit_summary(audit: Audit) -> None:
    """The audit's summary: the verdict, then one line per section, then what fails."""
    s = audit.summary
    colour = "green" if audit.ok else "red"
    out.print(
        f"[bold]audit[/bold]: [{colour}]{'PASS' if audit.ok else 'FAIL'}[/{colour}] "
        f"{s['pass']} passed, {s['fail']} failed, {s['waived']} waived, {s['error']} errors, "
        f"{s['not-applicable']} not applicable",
        highlight=False,
    )
    for section in audit.sections:
        n = section.summary
        out.print(
            f"  {section.name}: {n['pass']} passed, {n['fail']} failed, {n['waived']} waived, "
            f"{n['error']} errors, {n['not-applicable']} not applicable",
            highlight=False,
        )
    for section, control in audit.failing:
        out.print(f"  [red]✗ {section.name}: {control.id}[/red] {control.title}", highlight=False)


def run(args: list[str] | None = None) -> int:
    """Run the CLI and return its exit code. Whatever a user can get wrong ends in one `error:`
    line: usage errors (an unknown option, a value of the wrong type) included; Ctrl-C at any
    point is `interrupted` and 130; never a traceback."""
    try:
        code = app(args=args, prog_name="bulwark", standalone_mode=False)
    except (KeyboardInterrupt, typer.Abort):
        interrupted_line()
        return int(ExitCode.INTERRUPTED)
    except typer.TyperException as exc:  # usage errors, raised by typer's own click
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":
            return int(ExitCode.ERROR)  # `bulwark` alone: typer has shown the help already
        hint = f": see `{ctx.command_path} --help`" if ctx is not None else ""
        formatter = getattr(exc, "format_message", None)
        message = str(formatter() if formatter is not None else exc)
        error_line(message.rstrip(".") + hint)
        return int(ExitCode.ERROR)
    except BrokenPipeError:
        # The reader went away (`bulwark ... | head`): nothing more to say to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(ExitCode.OK)
    if code == ExitCode.INTERRUPTED and "interrupted" not in _said:
        # typer turns Ctrl-C outside a command (while it parses or loads) into a silent 130.
        interrupted_line()
    return code if isinstance(code, int) else int(ExitCode.OK)


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
