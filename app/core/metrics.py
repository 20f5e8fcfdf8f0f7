"""Prometheus metrics. Defined once at import; handlers only ``.inc()``/``.observe()``.

With several uvicorn workers, ``serve`` sets PROMETHEUS_MULTIPROC_DIR and every worker writes
its samples there, so a scrape of any worker reports the whole service.
"""

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from app.core.version import service_version

REQUESTS = Counter(
    "balances_http_requests_total",
    "HTTP requests by operation and status.",
    ["operation", "status"],
)
REQUEST_SECONDS = Histogram(
    "balances_http_request_duration_seconds",
    "Time to answer an HTTP request, by operation.",
    ["operation"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MUTATIONS = Counter(
    "balances_mutations_total", "Committed balance changes, by ledger entry kind.", ["kind"]
)
LOCK_WAIT_SECONDS = Histogram(
    "balances_row_lock_wait_seconds",
    "Time a request waited to acquire its balance row locks (SELECT ... FOR UPDATE).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
IDEMPOTENT_REPLAYS = Counter(
    "balances_idempotent_replays_total", "Requests answered from a stored Idempotency-Key."
)
POOL_IN_USE = Gauge(
    "balances_db_pool_connections_in_use",
    "Database connections checked out of this worker's pool.",
    multiprocess_mode="livesum",
)
POOL_SIZE = Gauge(
    "balances_db_pool_size",
    "Connections this worker's pool keeps open (pool_size).",
    multiprocess_mode="livesum",
)
# The usual Prometheus build-info idiom: always 1, the version in a label, so dashboards can
# show which release each instance runs and join it onto other series.
BUILD_INFO = Gauge(
    "balances_build_info",
    "The running release of Balances (always 1; the version is a label).",
    ["version"],
    multiprocess_mode="max",
)
BUILD_INFO.labels(service_version()).set(1)


def exposition() -> tuple[bytes, str]:
    """The text format for a scrape, merged across workers when there are several."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
