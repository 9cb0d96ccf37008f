"""Lab commands (disposable VMs that look like a fresh VPS) and the demo built on them."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bulwark.cli.app import app, lab_app
from bulwark.cli.cloud import TEXT_JSON, JsonFlag, OutFile, TextOrJson
from bulwark.cli.hosts import print_audit_summary, print_bootstrap, print_host_result
from bulwark.cli.live import board
from bulwark.cli.output import Output, checked, handles_errors, interrupted_line
from bulwark.errors import ConfigError, ExitCode

if TYPE_CHECKING:
    from rich.console import Console

    from bulwark.lab import vm as lab

Distro = Annotated[
    str, typer.Option(help="Debian release of the guest: bookworm or trixie.", metavar="NAME")
]
AuthOpt = Annotated[
    str,
    typer.Option("--auth", help="How root gets in: 'key' (injected) or 'password'.", metavar="HOW"),
]


@lab_app.command("up")
@handles_errors
def lab_up(
    distro: Distro = "bookworm",
    auth: AuthOpt = "key",
    name: Annotated[
        str, typer.Option(help="VM name (default: distro + random suffix).", metavar="NAME")
    ] = "",
    forward: Annotated[
        list[int] | None,
        typer.Option(
            "--forward",
            "-p",
            help="Guest TCP port to forward to a free local port.",
            metavar="PORT",
        ),
    ] = None,
    memory: Annotated[int, typer.Option(help="Guest memory in MiB.", metavar="MIB")] = 1024,
    cpus: Annotated[int, typer.Option(help="Guest CPUs.", metavar="N")] = 1,
    fmt: TextOrJson = None,
    as_json: JsonFlag = False,
    out_file: OutFile = None,
) -> None:
    """Boot a lab VM (fresh VPS) and leave it running until `bulwark lab down`.

    Example: bulwark lab up --distro trixie -p 5432 --json"""
    result_to = Output.choose(fmt, as_json, out_file, TEXT_JSON)
    from bulwark.lab import vm as lab  # noqa: PLC0415 - the lab loads only for lab commands
    from bulwark.lab.tools import ensure_tools  # noqa: PLC0415

    spec = lab.VMSpec(name, distro, auth, tuple(forward or ()), memory, cpus)  # type: ignore[arg-type]
    ensure_tools()
    try:
        with board("lab up", [spec.name or f"a {spec.distro} VM"]) as shown:
            vm = lab.start(spec, detach=True, pin_keys=True, progress=shown.say)
            shown.finish(spec.name or f"a {spec.distro} VM")
    except KeyboardInterrupt:
        interrupted_line(": the VM being started was stopped and its files removed")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None

    def draw(console: Console) -> None:
        console.print(
            f"[green]{vm.name}[/green] is up: ssh on 127.0.0.1:{vm.ssh_port} ({vm.accel})"
        )
        for guest, host in vm.forwards.items():
            console.print(f"  guest port {guest} -> 127.0.0.1:{host}")
        if vm.auth == "password":
            console.print(f"  root password in {vm.password_file} (mode 0600)")
        console.print(f"  root key {vm.root_key_path}; `bulwark lab ssh {vm.name}` logs in")

    result_to.result(lambda: vm_dict(vm), draw, f"{vm.name} is up")


def vm_dict(vm: lab.LabVM) -> dict[str, object]:
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
def lab_list(fmt: TextOrJson = None, as_json: JsonFlag = False, out_file: OutFile = None) -> None:
    """Show the running lab VMs."""
    result_to = Output.choose(fmt, as_json, out_file, TEXT_JSON)
    from bulwark.lab import vm as lab  # noqa: PLC0415

    vms = lab.running()

    def draw(console: Console) -> None:
        if not vms:
            console.print("no lab VMs running")
            return
        from rich.table import Table  # noqa: PLC0415

        table = Table("name", "distro", "auth", "ssh", "forwards", "accel", "pid")
        for vm in vms:
            fwd = ", ".join(f"{g}->{h}" for g, h in vm.forwards.items())
            table.add_row(
                vm.name, vm.distro, vm.auth, f"127.0.0.1:{vm.ssh_port}", fwd, vm.accel, str(vm.pid)
            )
        console.print(table)

    result_to.result(lambda: [vm_dict(vm) for vm in vms], draw, f"{len(vms)} lab VMs")


@lab_app.command("down")
@handles_errors
def lab_down(
    names: Annotated[list[str] | None, typer.Argument(help="VMs to stop.", metavar="NAME")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Stop every lab VM.")] = False,
    fmt: TextOrJson = None,
    as_json: JsonFlag = False,
    out_file: OutFile = None,
) -> None:
    """Stop lab VMs and remove their files."""
    result_to = Output.choose(fmt, as_json, out_file, TEXT_JSON)
    from bulwark.lab import vm as lab  # noqa: PLC0415

    if not names and not all_:
        raise ConfigError("name the VMs to stop, or pass --all")
    targets = lab.running() if all_ else [lab.find(n) for n in names or []]
    for vm in targets:
        lab.stop(vm)

    def draw(console: Console) -> None:
        for vm in targets:
            console.print(f"stopped {vm.name}")

    stopped = [vm.name for vm in targets]
    result_to.result(lambda: {"stopped": stopped}, draw, f"stopped {len(stopped)} lab VMs")


@lab_app.command("ssh", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@handles_errors
def lab_ssh(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The lab VM.", metavar="NAME")],
    user: Annotated[str, typer.Option(help="Remote user.", metavar="USER")] = "root",
    key: Annotated[
        Path | None, typer.Option(help="Private key (default: the VM's root key).", metavar="FILE")
    ] = None,
) -> None:
    """Open ssh to a lab VM (extra arguments are the remote command).

    Example: bulwark lab ssh bookworm-ab12 -- uptime"""
    from bulwark.hosts.keys import load_key  # noqa: PLC0415
    from bulwark.lab import vm as lab  # noqa: PLC0415
    from bulwark.settings.endpoints import check_login_user  # noqa: PLC0415

    checked("--user", check_login_user, user)
    if key is not None:
        load_key(key)
    vm = lab.find(name)
    cmd = [
        "ssh", "-p", str(vm.ssh_port), "-i", str(key or vm.root_key_path),
        "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={vm.known_hosts}",
        "-o", "StrictHostKeyChecking=yes", f"{user}@127.0.0.1", *ctx.args,
    ]  # fmt: skip
    os.execvp("ssh", cmd)  # noqa: S606 - replaces this process with the user's ssh client


@app.command()
@handles_errors
def demo(
    distro: Distro = "bookworm",
    auth: AuthOpt = "key",
    keep: Annotated[bool, typer.Option(help="Leave the VM running afterwards.")] = False,
    fmt: TextOrJson = None,
    as_json: JsonFlag = False,
    out_file: OutFile = None,
) -> None:
    """Boot a lab VM as a fresh VPS, bootstrap it, harden it, and verify it.

    Example: bulwark demo --distro trixie --keep"""
    result_to = Output.choose(fmt, as_json, out_file, TEXT_JSON)
    from bulwark.demo import run_demo  # noqa: PLC0415 - keeps other commands fast
    from bulwark.lab import vm as lab  # noqa: PLC0415

    spec = lab.VMSpec(distro=distro, auth=auth)  # type: ignore[arg-type]
    try:
        with board("demo", [f"a {distro} lab VPS"]) as shown:
            result = run_demo(spec, keep=keep, progress=shown.say, detail=shown.detail)
            shown.finish(f"a {distro} lab VPS")
    except KeyboardInterrupt:
        interrupted_line(": the demo's lab VM was stopped and its files removed")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    ok = (
        result.host_key_confirmed
        and not result.second.changes
        and result.verify.ok
        and result.audit.ok
    )

    def draw(console: Console) -> None:
        console.print(f"lab VPS [bold]{result.vm.name}[/bold] ({result.vm.distro}, root by {auth})")
        print_bootstrap(console, result.first)
        print_bootstrap(console, result.second)
        mark = "[green]✓[/green]" if result.host_key_confirmed else "[red]✗[/red]"
        console.print(f"  {mark} pinned host key matches the one the VM printed on its console")
        console.print(f"hardened: {result.harden.changed} operations changed the host")
        mark = "[green]✓[/green]" if result.root_login_refused else "[red]✗[/red]"
        console.print(f"  {mark} root login is refused from outside")
        for host in result.verify.hosts:
            print_host_result(console, host)
        print_audit_summary(console, result.audit)
        console.print(f"audit report: {result.audit_html}", highlight=False, soft_wrap=True)
        if keep:
            key = shlex.quote(str(result.operator_key))
            console.print(
                f"VM left running: bulwark lab ssh {result.vm.name} --user deploy --key {key}"
            )

    result_to.result(result.as_dict, draw, "PASS" if ok else "FAIL")
    if not ok:
        raise typer.Exit(int(ExitCode.FAILED_CHECKS))
