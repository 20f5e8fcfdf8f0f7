"""Throughput and latency of balances.update against a running service. Prints JSON.

Starts `balances serve` on a fresh embedded PostgreSQL (or uses DATABASE_URL), creates the
balances, then runs two bounded scenarios over loopback HTTP:

- hot: every request adds 1 to the SAME balance (worst case: all writers queue on one row lock);
- spread: each client updates its own balance (the common case: no lock contention).

With --wrk SECONDS (and Debian's `wrk` installed), the spread scenario is also driven by wrk,
a C load generator, so the Python client's own CPU does not cap the measurement.

Usage: python benchmarks/update_throughput.py [--requests 2000] [--concurrency 16] [--workers 1]
       [--wrk 10]
"""

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from typing import Any

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _wait_ready(base: str, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            if process.poll() is not None:
                raise RuntimeError("service exited during start-up")
            try:
                if (await client.get(f"{base}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("service did not become ready")


async def _scenario(
    client: httpx.AsyncClient, bodies: list[dict[str, Any]], concurrency: int
) -> dict[str, Any]:
    latencies: list[float] = []
    queue = list(reversed(bodies))
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while queue:
            body = queue.pop()
            started = time.perf_counter()
            response = await client.post("/v1/balances.update", json=body)
            latencies.append(time.perf_counter() - started)
            failures += response.status_code != 200

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(bodies),
        "failures": failures,
        "seconds": round(elapsed, 3),
        "requests_per_second": round(len(bodies) / elapsed, 1),
        "latency_ms": {
            "p50": round(quantiles[49] * 1000, 2),
            "p95": round(quantiles[94] * 1000, 2),
            "p99": round(quantiles[98] * 1000, 2),
            "max": round(max(latencies) * 1000, 2),
        },
    }


async def _run(args: argparse.Namespace, base: str, secret: str) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.concurrency)
    headers = {"authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(
        base_url=base, limits=limits, timeout=30, headers=headers
    ) as client:
        for n in range(args.concurrency):
            body = {"customer_id": f"bench_{n}", "feature_id": "calls", "included_grant": 0}
            await client.post("/v1/balances.create", json=body)
        hot = [{"customer_id": "bench_0", "feature_id": "calls", "add_to_balance": 1}]
        spread = [
            {
                "customer_id": f"bench_{i % args.concurrency}",
                "feature_id": "calls",
                "add_to_balance": 1,
            }
            for i in range(args.requests)
        ]
        await _scenario(client, spread[: args.concurrency * 5], args.concurrency)  # warm-up
        results = {
            "hot": await _scenario(client, hot * args.requests, args.concurrency),
            "spread": await _scenario(client, spread, args.concurrency),
        }
        check = await client.post("/v1/balances.list", json={"customer_id": "bench_0"})
        remaining = Decimal(str(check.json()["list"][0]["remaining"]))
        results["hot_balance_exact"] = remaining == sum(
            1
            for b in hot * args.requests + spread + spread[: args.concurrency * 5]
            if b["customer_id"] == "bench_0"
        )
        return results


_WRK_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  local body = '{"customer_id":"bench_' .. (counter %% %(clients)d) ..
    '","feature_id":"calls","add_to_balance":1}'
  return wrk.format("POST", "/v1/balances.update",
    {["content-type"]="application/json", ["authorization"]="Bearer %(secret)s"}, body)
end
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    '{"requests":%%d,"failures":%%d,"seconds":%%.3f,"requests_per_second":%%.1f,' ..
    '"latency_ms":{"p50":%%.2f,"p95":%%.2f,"p99":%%.2f,"max":%%.2f}}\\n',
    summary.requests, errors, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1e3, latency:percentile(95) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3))
end
"""


def _wrk(base: str, secret: str, clients: int, seconds: int) -> dict[str, Any]:
    """The spread scenario under wrk; its Lua `done` hook prints the summary as JSON."""
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT % {"clients": clients, "secret": secret})
    try:
        command = ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "-s", script.name, base]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--wrk", type=int, default=0, metavar="SECONDS")
    args = parser.parse_args()

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="balances-bench-") as data_dir:
        cli = [sys.executable, "-m", "app.cli"]
        env = {**os.environ, "BALANCES_LOG_LEVEL": "warning"}
        create_key = [*cli, "keys", "create", "--name", "bench", "--scope", "write"]
        created = subprocess.run(
            [*create_key, "--data-dir", data_dir],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        secret = json.loads(created.stdout)["secret"]
        serve = [*cli, "serve", "--port", str(port), "--workers", str(args.workers)]
        process = subprocess.Popen(
            [*serve, "--data-dir", data_dir], env=env, stdout=subprocess.DEVNULL
        )
        try:
            asyncio.run(_wait_ready(base, process))
            results = asyncio.run(_run(args, base, secret))
            if args.wrk:
                results["spread_wrk"] = _wrk(base, secret, args.concurrency, args.wrk)
        finally:
            process.terminate()
            process.wait(timeout=30)
    report = {
        "benchmark": "balances.update",
        "concurrency": args.concurrency,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        **results,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
