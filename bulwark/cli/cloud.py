"""Cloud commands: plan (the program under mocks), audit, settings, and the pooler check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bulwark.cli.app import app, pooler_app
from bulwark.cli.output import (
    JSON_HELP,
    OUT_HELP,
    Output,
    escape,
    format_help,
    handles_errors,
    out,
    progress,
    writable,
)
from bulwark.errors import ConfigError, ExitCode

if TYPE_CHECKING:
    from rich.console import Console

    from bulwark.cloud.plan import Plan

TEXT_JSON = ("text", "json")
StacksDir = Annotated[
    Path, typer.Option(help="Folder of the Pulumi.<stack>.yaml files.", metavar="DIR")
]
JsonFlag = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
OutFile = Annotated[Path | None, typer.Option("--out", "-o", help=OUT_HELP, metavar="FILE")]
TextOrJson = Annotated[
    str | None, typer.Option("--format", "-f", help=format_help(*TEXT_JSON), metavar="FORMAT")
]


@app.command()
@handles_errors
def plan(
    stack: Annotated[
        list[str],
        typer.Option(
            "--stack", "-s", help="Stack: dev, staging or prod; repeat for several.", metavar="NAME"
        ),
    ],
    stacks_dir: StacksDir = Path("stacks"),
    fmt: TextOrJson = None,
    as_json: JsonFlag = False,
    out_file: OutFile = None,
) -> None:
    """Run the Pulumi program under mocks (no credentials, no Pulumi CLI); show what it declares.

    JSON: one plan, or a list for several stacks.

    Example: bulwark plan --stack prod --json --out plan.json"""
    result_to = Output.choose(fmt, as_json, out_file, TEXT_JSON)
    # The first line comes before pydantic and Pulumi load; every stack's settings are checked
    # before Pulumi runs, and every stack is planned before the result is printed.
    with progress() as say:
        say(f"planning {', '.join(f'stack {name}' for name in stack)} under Pulumi mocks")
        from bulwark.settings.cloud import (  # noqa: PLC0415
            cloud_settings,
            read_stack_config,
            settings_data,
            stack_file,
        )

        for name in stack:
            path = stack_file(name, stacks_dir)
            cloud_settings(settings_data(read_stack_config(path), str(path)), str(path))
        from bulwark.cloud.plan import run_plan  # noqa: PLC0415 - Pulumi loads only here

        results = [run_plan(name, stacks_dir) for name in stack]

    def data() -> object:
        dicts = [result.as_dict() for result in results]
        return dicts[0] if len(dicts) == 1 else dicts

    def draw(console: Console) -> None:
        for result in results:
            _print_plan(console, result)

    total = sum(len(r.resources) for r in results)
    result_to.result(data, draw, f"{len(results)} stack(s), {total} resources")


def _print_plan(console: Console, result: Plan) -> None:
    from rich.table import Table  # noqa: PLC0415
    from rich.tree import Tree  # noqa: PLC0415

    from bulwark.cloud.plan import highlights  # noqa: PLC0415

    s = result.settings
    console.print(
        f"[bold]stack {result.stack}[/bold]: project {s.project}, {s.region}, "
        f"{len(result.resources)} resources",
        highlight=False,
    )
    tree = Tree(f"[dim]{s.name}[/dim]")
    nodes: dict[str | None, Tree] = {None: tree}
    for _, res in result.walk():
        label = f"[cyan]{res.type}[/cyan] {res.name}"
        node = nodes.get(res.parent, tree).add(label, highlight=False)
        for path, value in highlights(res):
            node.add(f"[dim]{path}[/dim] = {escape(value)}", highlight=False)
        nodes[res.urn] = node
    console.print(tree)
    outputs = Table("output", "value", title="stack outputs", title_justify="left")
    for key, value in result.outputs.items():
        if key == "connection_budget":
            continue  # shown in full below
        shown = value if isinstance(value, str) else json.dumps(value)
        if "\n" in shown:
            shown = shown.splitlines()[0] + " …"
        style = "yellow" if key in result.secret_outputs else ""
        outputs.add_row(key, escape(shown), style=style)
    console.print(outputs)
    b = result.settings.budget
    console.print(
        f"connection budget: {b.clients.explain()} clients <= {b.pooler.client_capacity} pooler "
        f"capacity; {b.pooler.explain_servers()} <= {b.postgres.usable} usable "
        f"(max_connections {b.postgres.max_connections} - {b.postgres.reserved} reserved): "
        + ("[green]fits[/green]" if b.fits else "[red]does not fit[/red]"),
        highlight=False,
    )


AUDIT_FORMATS = ("text", "md", "html", "json", "sarif")


@app.command()
@handles_errors
def audit(
    stack: Annotated[
        list[str] | None,
        typer.Option(
            "--stack", "-s", help="Stack to audit (mock run); repeat for several.", metavar="NAME"
        ),
    ] = None,
    hosts: Annotated[
        list[Path] | None,
        typer.Option(
            "--hosts", help="A `bulwark verify --json` results file; repeatable.", metavar="FILE"
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", "-f", help=format_help(*AUDIT_FORMATS), metavar="FORMAT"),
    ] = None,
    as_json: JsonFlag = False,
    out_file: OutFile = None,
    stacks_dir: StacksDir = Path("stacks"),
    policies_dir: Annotated[
        Path, typer.Option(help="Folder of waivers.yaml and config/<stack>.json.", metavar="DIR")
    ] = Path("policies"),
    list_rules: Annotated[
        bool, typer.Option("--list-rules", help="Print the rules table (Markdown) and exit.")
    ] = False,
    every_stack: Annotated[
        bool, typer.Option("--all", help="Every stack in --stacks-dir, in one run and report.")
    ] = False,
) -> None:
    """Audit stacks (policy rules on the mock run) and hosts (verify results): one report.

    Exit 0 when nothing fails, 1 when a mandatory control fails, 2 on bad input.

    Example: bulwark audit --all --hosts results.json --format html --out audit.html"""
    from bulwark.policy import docs as policy_docs  # noqa: PLC0415

    if list_rules:
        out.print(policy_docs.rules_table(), markup=False, highlight=False, soft_wrap=True)
        return
    result_to = Output.choose(fmt, as_json, out_file, AUDIT_FORMATS)
    stacks = list(stack or [])
    if not stacks and not hosts and not every_stack:
        raise ConfigError(
            "--stack: nothing to audit: pass --stack S, --all and/or --hosts results.json"
        )
    named = [*(f"stack {n}" for n in stacks), *(["every stack"] if every_stack else [])]
    with progress() as say:  # the first line comes before the policy engine loads
        say(f"auditing {', '.join([*named, *map(str, hosts or [])])}")
        from bulwark.audit import known_stacks, run_audit  # noqa: PLC0415
        from bulwark.policy.report import render  # noqa: PLC0415

        if every_stack:
            found = known_stacks(stacks_dir)
            if not found:
                raise ConfigError(
                    f"--all: no Pulumi.<stack>.yaml in {stacks_dir}: pass --stacks-dir"
                )
            stacks += [s for s in found if s not in stacks]
        result = run_audit(stacks, hosts or [], stacks_dir=stacks_dir, policies_dir=policies_dir)
    s = result.summary
    verdict = (
        f"{'PASS' if result.ok else 'FAIL'}: {s['pass']} passed, {s['fail']} failed, "
        f"{s['waived']} waived, {s['error']} errors, {s['not-applicable']} not applicable"
    )
    result_to.deliver(render(result, result_to.fmt), verdict)  # type: ignore[arg-type]
    if not result.ok:
        raise typer.Exit(int(ExitCode.FAILED_CHECKS))


@app.command()
@handles_errors
def settings(
    cloud: Annotated[
        bool, typer.Option("--cloud", help="The cloud stack's settings instead of the hosts'.")
    ] = False,
    fmt: TextOrJson = None,
    as_json: JsonFlag = False,
    out_file: OutFile = None,
) -> None:
    """Print the hardening settings (defaults and reasons): a Markdown table, or the JSON Schema.

    Example: bulwark settings --cloud --json"""
    result_to = Output.choose(fmt, as_json, out_file, TEXT_JSON)
    if result_to.fmt == "json":
        from bulwark.settings.docs import settings_schema  # noqa: PLC0415

        result_to.json(settings_schema(cloud=cloud), "settings schema")
        return
    from bulwark.settings.docs import cloud_settings_table, settings_table  # noqa: PLC0415

    result_to.deliver(cloud_settings_table() if cloud else settings_table(), "settings table")


@pooler_app.command("check")
@handles_errors
def pooler_check(
    dsn: Annotated[
        str,
        typer.Argument(
            help="libpq DSN of the pooler, e.g. 'host=10.0.0.5 port=6432 dbname=app user=app'. "
            "Leave the password out: libpq reads PGPASSWORD or ~/.pgpass.",
            metavar="DSN",
        ),
    ],
    prepare_threshold: Annotated[
        str,
        typer.Option(help="The app's psycopg prepare_threshold: a number, or 'none'.", metavar="N"),
    ] = "5",
    prepared_max: Annotated[
        int,
        typer.Option(help="The app's psycopg prepared_max (statement cache size).", metavar="N"),
    ] = 100,
    clients: Annotated[
        int,
        typer.Option(
            help="Concurrent connections (more than the pool's server ones).", metavar="N"
        ),
    ] = 20,
    rounds: Annotated[int, typer.Option(help="Query rounds per connection.", metavar="N")] = 20,
    fmt: TextOrJson = None,
    as_json: JsonFlag = False,
    out_file: OutFile = None,
    results: Annotated[
        Path | None,
        typer.Option(
            help="Also write the finding as verify results, for `bulwark audit --hosts`.",
            metavar="FILE",
        ),
    ] = None,
) -> None:
    """Prove whether the app's driver settings survive this transaction pooler.

    Example: bulwark pooler check 'host=10.0.0.5 port=6432 dbname=app user=app' --json"""
    result_to = Output.choose(fmt, as_json, out_file, TEXT_JSON)
    with progress() as say:  # the first line comes before psycopg loads; the DSN is not shown
        say(f"pooler check: {clients} clients, {rounds} rounds")
        from bulwark.pooler import check as pooler  # noqa: PLC0415 - psycopg only for this command
        from bulwark.pooler.report import as_verify_report  # noqa: PLC0415

        writable(results, "--results")
        driver = pooler.Driver(pooler.parse_threshold(prepare_threshold), prepared_max)
        result = pooler.check(dsn, driver=driver, clients=clients, rounds=rounds)
    if results is not None:
        as_verify_report(result).write(results)

    def draw(console: Console) -> None:
        pgbouncer = f"PgBouncer {result.pgbouncer}" if result.pgbouncer else "PgBouncer ?"
        console.print(
            f"{result.target}: {pgbouncer}, server {result.server_version}, "
            f"libpq {'.'.join(map(str, result.libpq))}",
            highlight=False,
        )
        for run in result.workloads:
            errors = sum(run.errors.values()) + sum(run.refused.values())
            colour = "green" if run.safe else "red"
            console.print(
                f"  {run.label}: [{colour}]{run.ok} ok, {errors} errors[/{colour}] "
                f"({run.clients} clients x {run.rounds} rounds on "
                f"{len(run.server_pids)} server connections, {run.seconds:.1f} s); "
                f"a server connection showed {run.server_prepared} prepared statements",
                highlight=False,
            )
            for kind, count in (run.refused + run.errors).most_common():
                console.print(f"    {count} x {kind}", highlight=False)
        console.print(result.verdict(), highlight=False)

    result_to.result(result.as_dict, draw, "SAFE" if result.safe else "UNSAFE")
    if not result.safe:
        raise typer.Exit(int(ExitCode.FAILED_CHECKS))
