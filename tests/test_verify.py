"""`balances verify`: the conservation invariant and version sequence, over what the service wrote.

Balances are written through the API (every kind of entry, resets, deletes, a reused id), then
checked; then rows are tampered with in SQL, as an incident or a bad manual fix would, and
verify must name exactly the balances that no longer add up, and exit 1.
"""

import json
import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI

from app.core.clock import FrozenClock
from app.core.types import to_epoch_ms
from app.ledger.verify import verify_ledger
from tests.conftest import START
from tests.helpers import Api

ROOT = Path(__file__).resolve().parent.parent
D = Decimal


def balances_verify(database_url: str, *args: str) -> tuple[int, dict[str, Any], str]:
    """Run `balances verify` as an operator would; (exit status, parsed stdout, stderr)."""
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "verify", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


async def verify(app: FastAPI, customer_id: str | None = None) -> dict[str, Any]:
    report = await verify_ledger(app.state.database.sessionmaker, customer_id)
    return report.as_dict()


async def write_a_bit_of_everything(api: Api, clock: FrozenClock) -> dict[str, str]:
    """Balances that went through every kind of change; returns their ids by role."""
    daily = await api.create(feature_id="calls", included_grant=100, reset={"interval": "day"})
    await api.update(feature_id="calls", add_to_balance=D("2.5"))
    await api.update(feature_id="calls", usage=10)
    await api.ok("balances.track", {"customer_id": "cus_1", "feature_id": "calls", "value": 3})
    lock = {"lock_id": "job_1", "enabled": True, "expires_at": to_epoch_ms(START) + 3_600_000}
    check = {"customer_id": "cus_1", "feature_id": "calls", "required_balance": 5, "lock": lock}
    await api.ok("balances.check", check)
    await api.ok(
        "balances.finalize",
        {"customer_id": "cus_1", "lock_id": "job_1", "action": "confirm", "override_value": 2},
    )
    clock.set(START + timedelta(days=3))  # three resets due; the next write persists one entry
    await api.update(feature_id="calls", remaining=40)

    deleted = await api.create(customer_id="cus_2", feature_id="seats", included_grant=7)
    await api.update(customer_id="cus_2", feature_id="seats", usage=4)
    await api.ok("balances.delete", {"customer_id": "cus_2", "feature_id": "seats"})

    # A customer may reuse the id of its own deleted balance: a second life, versions from 1.
    reused = await api.create(customer_id="cus_3", balance_id="b_reused", feature_id="f")
    await api.ok("balances.delete", {"customer_id": "cus_3", "balance_id": "b_reused"})
    await api.create(customer_id="cus_3", balance_id="b_reused", feature_id="f", included_grant=3)
    await api.update(customer_id="cus_3", feature_id="f", add_to_balance=1)
    unlimited = await api.create(customer_id="cus_3", feature_id="u", unlimited=True)
    await api.ok("balances.track", {"customer_id": "cus_3", "feature_id": "u", "value": 9})
    return {
        "daily": daily["id"],
        "deleted": deleted["id"],
        "reused": reused["id"],
        "unlimited": unlimited["id"],
    }


async def test_a_clean_database_passes(
    api: Api, app: FastAPI, clock: FrozenClock, database_url: str
) -> None:
    await write_a_bit_of_everything(api, clock)
    assert api.invariant_violations() == []
    report = await verify(app)
    assert report["ok"] is True and report["violations"] == []
    assert report["balances_checked"] == 4 and report["live_balances"] == 3
    assert report["deleted_balances"] == 1
    assert report["ledger_entries"] == api.count("balance_ledger") > 15

    status, printed, _ = balances_verify(database_url)
    assert status == 0
    assert printed["ok"] is True and printed["ledger_entries"] == report["ledger_entries"]


async def test_an_empty_database_passes(app: FastAPI, db: psycopg.Connection) -> None:
    report = await verify(app)
    assert report["ok"] is True and report["balances_checked"] == 0
    assert report["ledger_entries"] == 0


async def test_a_tampered_balance_is_named_and_the_exit_status_is_1(
    api: Api, clock: FrozenClock, database_url: str
) -> None:
    ids = await write_a_bit_of_everything(api, clock)
    api.db.execute("UPDATE balances SET adjustment = adjustment + 1 WHERE id = %s", (ids["daily"],))
    status, report, stderr = balances_verify(database_url)
    assert status == 1 and "1 balance(s)" in stderr
    assert report["ok"] is False and report["violation_count"] == 1
    [violation] = report["violations"]
    assert violation["balance_id"] == ids["daily"] and violation["customer_id"] == "cus_1"
    assert violation["problems"] == ["remaining_mismatch"]
    assert violation["status"] == "live"
    assert violation["ledger_sum"] == 40 and violation["remaining"] == 41
    assert violation["discrepancy"] == -1


async def test_verify_can_be_limited_to_one_customer(
    api: Api, app: FastAPI, clock: FrozenClock, database_url: str
) -> None:
    ids = await write_a_bit_of_everything(api, clock)
    api.db.execute("UPDATE balances SET usage = usage + 0.5 WHERE id = %s", (ids["unlimited"],))
    assert (await verify(app, "cus_1"))["ok"] is True
    only_cus_3 = await verify(app, "cus_3")
    assert only_cus_3["balances_checked"] == 2  # the reused id counts once, plus the unlimited
    assert [v["balance_id"] for v in only_cus_3["violations"]] == [ids["unlimited"]]
    assert only_cus_3["violations"][0]["discrepancy"] == D("0.5")
    status, report, _ = balances_verify(database_url, "--customer-id", "cus_1")
    assert status == 0 and report["customer_id"] == "cus_1"


async def test_a_version_bumped_without_an_entry_is_a_version_mismatch(
    api: Api, app: FastAPI, clock: FrozenClock
) -> None:
    ids = await write_a_bit_of_everything(api, clock)
    api.db.execute("UPDATE balances SET version = version + 1 WHERE id = %s", (ids["daily"],))
    report = await verify(app)
    assert [(v["balance_id"], v["problems"]) for v in report["violations"]] == [
        (ids["daily"], ["version_mismatch"])
    ]


def forge_entry(api: Api, balance_id: str, version_offset: int, kind: str = "add") -> None:
    """Append an entry that adds 0 (so conservation still holds) at an arbitrary version."""
    api.db.execute(
        """
        INSERT INTO balance_ledger (customer_id, balance_id, feature_id, entity_id, interval, kind,
            remaining_delta, usage_delta, remaining_after, usage_after, granted_after,
            balance_version, created_at)
        SELECT customer_id, balance_id, feature_id, entity_id, interval, %s, 0, 0,
               remaining_after, usage_after, granted_after, balance_version + %s, created_at
        FROM balance_ledger WHERE balance_id = %s ORDER BY id DESC LIMIT 1
        """,
        (kind, version_offset, balance_id),
    )


async def test_a_gap_in_the_versions_is_found(api: Api, app: FastAPI, clock: FrozenClock) -> None:
    ids = await write_a_bit_of_everything(api, clock)
    forge_entry(api, ids["daily"], version_offset=2)  # version n+2 after n: n+1 is missing
    api.db.execute("UPDATE balances SET version = version + 2 WHERE id = %s", (ids["daily"],))
    forge_entry(api, ids["unlimited"], version_offset=0)  # a repeated version
    report = await verify(app)
    found = {v["balance_id"]: v for v in report["violations"]}
    assert set(found) == {ids["daily"], ids["unlimited"]}
    assert found[ids["daily"]]["problems"] == ["version_gap"]
    assert found[ids["daily"]]["out_of_sequence_entries"] == 1
    assert found[ids["unlimited"]]["problems"] == ["version_gap"]


async def test_a_row_deleted_without_its_delete_entry_is_found(
    api: Api, app: FastAPI, clock: FrozenClock
) -> None:
    ids = await write_a_bit_of_everything(api, clock)
    api.db.execute("DELETE FROM balances WHERE id = %s", (ids["daily"],))
    report = await verify(app)
    [violation] = report["violations"]
    assert violation["balance_id"] == ids["daily"] and violation["status"] == "deleted"
    assert violation["problems"] == ["remaining_mismatch", "deleted_without_delete_entry"]
    assert violation["remaining"] == 0 and violation["discrepancy"] == 40


async def test_a_balance_without_any_entry_is_found(api: Api, app: FastAPI) -> None:
    api.db.execute(
        """
        INSERT INTO balances (customer_id, id, feature_id, interval, included_grant, version,
                              created_at, updated_at)
        VALUES ('cus_9', 'b_ghost', 'f', 'one_off', 5, 1, now(), now())
        """
    )
    report = await verify(app)
    [violation] = report["violations"]
    assert violation["balance_id"] == "b_ghost" and violation["entries"] == 0
    assert violation["problems"] == ["remaining_mismatch", "version_mismatch"]
    assert violation["discrepancy"] == -5


@pytest.mark.parametrize("limit", [1, 2])
async def test_every_offender_is_counted_even_when_fewer_are_listed(
    api: Api, app: FastAPI, clock: FrozenClock, limit: int
) -> None:
    await write_a_bit_of_everything(api, clock)
    api.db.execute("UPDATE balances SET adjustment = adjustment - 1")
    report = (await verify_ledger(app.state.database.sessionmaker, limit=limit)).as_dict()
    assert report["violation_count"] == 3 and len(report["violations"]) == limit
