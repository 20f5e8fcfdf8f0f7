"""Request examples shown in Swagger UI (``openapi_examples``)."""

from typing import Any

Examples = dict[str, Any]

CREATE: Examples = {
    "monthly": {
        "summary": "Monthly grant of 1000 API calls",
        "value": {
            "customer_id": "cus_123",
            "feature_id": "api_calls",
            "included_grant": 1000,
            "reset": {"interval": "month"},
        },
    },
    "seat": {
        "summary": "One-off credits for one seat",
        "value": {
            "customer_id": "cus_123",
            "feature_id": "ai_credits",
            "entity_id": "seat_42",
            "included_grant": 25.5,
        },
    },
}

UPDATE: Examples = {
    "add": {
        "summary": "Add 100 to the remaining balance",
        "value": {"customer_id": "cus_123", "feature_id": "api_calls", "add_to_balance": 100},
    },
    "set": {
        "summary": "Set remaining of the monthly balance to exactly 500",
        "value": {
            "customer_id": "cus_123",
            "feature_id": "api_calls",
            "interval": "month",
            "remaining": 500,
        },
    },
    "entity": {
        "summary": "Set usage of one seat's balance",
        "value": {
            "customer_id": "cus_123",
            "feature_id": "ai_credits",
            "entity_id": "seat_42",
            "usage": 3.25,
        },
    },
}

LIST: Examples = {
    "customer": {
        "summary": "A customer's balances",
        "value": {"customer_id": "cus_123", "limit": 50},
    },
}

DELETE: Examples = {
    "by_key": {
        "summary": "Delete the monthly balance of a feature",
        "value": {"customer_id": "cus_123", "feature_id": "api_calls", "interval": "month"},
    },
}
