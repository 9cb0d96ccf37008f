"""Benchmark: direct Postgres vs PgBouncer in transaction mode, as bulwark deploys them.

    uv run python bench/pooler.py [--distro trixie] [--transactions 10000] [--clients 10 100 500]

Boots a fresh lab VM, bootstraps and hardens it with PgBouncer and a local Postgres (not timed),
then runs pgbench, PostgreSQL's own load generator, in the guest (so both arms pay the same
client cost and the same emulated CPU): a read-only workload (`pgbench -S`) at each client
count, straight to Postgres and through PgBouncer, with unprepared statements (extended
protocol, `-M extended`) and prepared ones (`-M prepared`). For each run it reports tps, the
errors pgbench saw, and the most server connections Postgres had open for the database while
the run lasted (sampled from pg_stat_activity every second).

Prepared statements through PgBouncer need PgBouncer >= 1.21 with max_prepared_statements > 0:
Debian 13 (the default here) has 1.24; on Debian 12 (1.18) the prepared runs fail, which is
what `bulwark pooler check` exists to catch.
"""

from __future__ import annotations

import argparse
import re
import secrets
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bulwark.hosts.bootstrap import TrustStore, bootstrap
from bulwark.hosts.keys import ensure_key
from bulwark.lab import vm as lab
from bulwark.lab.inventory import host_data, write_inventory
from bulwark.settings.hosts import DeployUser
from bulwark.verify import run

GUEST_ADDRESS = "10.0.2.15"  # qemu's user network gives every guest this address
POOL_SIZE = 20

# Sampled from the database's side while a flag file exists: connections to `app` that are client
# backends (PgBouncer's server connections, or pgbench's own when it connects directly).
SAMPLER = (
    'while [ -e "$1" ]; do runuser -u postgres -- psql -XAtq -c "SELECT count(*) FROM '
    "pg_stat_activity WHERE datname = 'app' AND backend_type = 'client backend'\"; sleep 1; done"
)


TERMINATE = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = 'app'"


@dataclass
class Result:
    tps: float | None
    connect_ms: float | None
    transactions: int
    failed: int
    error: str
    servers: int
    output: str


def settings(secret: Path) -> dict[str, object]:
    return {
        "firewall": {"ssh_rate_limit": False},
        "fail2ban": {"ignoreip": ["10.0.2.2"]},
        "pgbouncer": {
            "listen_address": GUEST_ADDRESS,
            "client_ranges": ["10.0.2.2/32"],
            "local_postgres": True,
            "default_pool_size": POOL_SIZE,
            "max_client_conn": 600,
            "databases": [{"name": "app", "user": "app", "password_file": str(secret)}],
        },
    }


def remote(ssh: list[str], script: str, password: str, timeout: float = 900) -> str:
    """Run `script` on the guest with PGPASSWORD set from stdin (never on a command line)."""
    wrapped = f"read -r PGPASSWORD; export PGPASSWORD; {script}"
    done = subprocess.run(
        [*ssh, "sh -c " + shlex.quote(wrapped)],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode == 255:
        raise SystemExit(f"ssh failed: {done.stderr[-2000:]}")
    return done.stdout + done.stderr


def pgbench(ssh: list[str], password: str, dsn: str, clients: int, mode: str, total: int) -> Result:
    # A fixed number of transactions shared by the clients, not a duration: pgbench connects
    # every client before the first transaction, and 500 SCRAM logins under emulation take
    # longer than a short run. tps is reported without that connection time.
    per_client = max(total // clients, 1)
    bench = f"pgbench -n -S -M {mode} -c {clients} -j 2 -t {per_client} {shlex.quote(dsn)}"
    script = (
        # Start from no server connections (PgBouncer's idle ones from the last run would count).
        f"sudo -n runuser -u postgres -- psql -XAtq -c {shlex.quote(TERMINATE)} >/dev/null; "
        "flag=$(mktemp); samples=$(mktemp); "
        f'sudo -n sh -c {shlex.quote(SAMPLER)} sampler "$flag" > "$samples" 2>/dev/null & '
        f'{bench} 2>&1; echo "exit=$?"; rm -f "$flag"; wait; '
        'echo "servers=$(sort -n "$samples" | tail -1)"; rm -f "$samples"'
    )
    out = remote(ssh, script, password)
    tps = re.search(r"^tps = ([\d.]+)", out, re.M)
    connect = re.search(r"^initial connection time = ([\d.]+) ms", out, re.M)
    done = re.search(r"number of transactions actually processed: (\d+)", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    servers = re.search(r"^servers=(\d*)", out, re.M)
    errors = [line.split("error: ", 1)[1] for line in out.splitlines() if "error: " in line]
    return Result(
        tps=float(tps.group(1)) if tps else None,
        connect_ms=float(connect.group(1)) if connect else None,
        transactions=int(done.group(1)) if done else 0,
        failed=int(failed.group(1)) if failed else 0,
        error=_summary(errors),
        servers=int(servers.group(1)) if servers and servers.group(1) else 0,
        output=out,
    )


def _summary(errors: list[str]) -> str:
    """The first distinct error (the server's message when there is one) and how many."""
    if not errors:
        return ""
    first = errors[0]
    server = re.search(r"(FATAL|ERROR):\s+(.*)", first)
    text = server.group(2) if server else first
    return f"{text} ({len(errors)}x)" if len(errors) > 1 else text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--distro", default="trixie")
    parser.add_argument("--transactions", type=int, default=10000, help="per run, all clients")
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100, 500])
    args = parser.parse_args()
    password = secrets.token_urlsafe(24)
    spec = lab.VMSpec(distro=args.distro, cpus=2, memory_mb=2048)
    with lab.booted(spec) as vm, tempfile.TemporaryDirectory() as tmp:
        secret = Path(tmp) / "app-password"
        secret.write_text(password + "\n")
        secret.chmod(0o600)
        key, _ = ensure_key(vm.directory / "operator")
        bootstrap(vm.target, vm.root_login(), DeployUser(), key, TrustStore(vm.directory))
        data = host_data(vm, user="deploy", key=key.path, bulwark=settings(secret))
        inv = write_inventory(vm.directory / "inventory.py", {"bench": data})
        exe = str(Path(sys.executable).with_name("bulwark"))
        done = subprocess.run(
            [exe, "harden", str(inv)], capture_output=True, text=True, check=False
        )
        if done.returncode:
            raise SystemExit(f"harden failed:\n{done.stdout[-3000:]}")

        (target,) = run.from_inventory(inv)
        config = Path(tmp) / "ssh_config"
        config.write_text(run.ssh_config({"bench": target}, Path(tmp)))
        ssh = ["ssh", "-F", str(config), "bench"]
        direct = "host=127.0.0.1 port=5432 dbname=app user=app"
        pooled = f"host={GUEST_ADDRESS} port=6432 dbname=app user=app"
        versions = remote(
            ssh,
            'pgbench --version; /usr/sbin/pgbouncer --version | head -1; echo "postgres '
            f"$(psql -XAtq -c 'SHOW server_version' {shlex.quote(direct)}), max_connections "
            f"$(psql -XAtq -c 'SHOW max_connections' {shlex.quote(direct)})\"; "
            'echo "guest CPUs $(nproc)"',
            password,
        )
        remote(ssh, f"pgbench -i -q -s 10 {shlex.quote(direct)}", password)
        rows = []
        for clients in args.clients:
            for mode in ("extended", "prepared"):
                for arm, dsn in (("direct", direct), ("pgbouncer", pooled)):
                    result = pgbench(ssh, password, dsn, clients, mode, args.transactions)
                    rows.append((clients, mode, arm, result))
                    print(_row(clients, mode, arm, result), flush=True)
        subprocess.run([*ssh, "-O", "exit"], capture_output=True, check=False)

    print()
    print(f"distro {args.distro} (lab VM, {vm.accel.upper()}, 2 vCPUs); versions:")
    print("  " + "\n  ".join(line for line in versions.splitlines() if line.strip()))
    print(
        f"pgbench -S, {args.transactions} transactions per run; "
        f"PgBouncer default_pool_size {POOL_SIZE}"
    )
    print("| clients | statements | direct Postgres | PgBouncer (transaction) | ratio |")
    print("|---|---|---|---|---|")
    for clients in args.clients:
        for mode in ("extended", "prepared"):
            got = {arm: r for c, m, arm, r in rows if c == clients and m == mode}
            d, p = got["direct"], got["pgbouncer"]
            ratio = f"{p.tps / d.tps:.2f}" if p.tps and d.tps else "n/a"
            print(f"| {clients} | {mode} | {_cell(d)} | {_cell(p)} | {ratio} |")
    print("prepared / extended tps through PgBouncer:")
    for clients in args.clients:
        got = {m: r for c, m, arm, r in rows if c == clients and arm == "pgbouncer"}
        ext, prep = got["extended"].tps, got["prepared"].tps
        print(f"  {clients} clients: " + (f"{prep / ext:.2f}" if ext and prep else "n/a"))


def _cell(r: Result) -> str:
    if r.tps is None:
        return f"aborted ({r.error or 'no error printed'}), {r.servers} server conns"
    parts = [f"{r.tps:.0f} tps", f"{r.failed} failed", f"{r.servers} server conns"]
    if r.connect_ms is not None:
        parts.append(f"{r.connect_ms / 1000:.1f} s to connect")
    if r.error:
        parts.append(f"errors: {r.error}")
    return ", ".join(parts)


def _row(clients: int, mode: str, arm: str, r: Result) -> str:
    line = f"{clients:>4} clients {mode:>8} {arm:>9}: {_cell(r)}"
    if r.tps is None:  # what pgbench said, to see why
        line += "\n" + "\n".join(f"      | {x}" for x in r.output.strip().splitlines()[-8:])
    return line


if __name__ == "__main__":
    main()
