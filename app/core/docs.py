"""The OpenAPI document as the contract, and Swagger UI at /docs, served from local assets.

FastAPI's document is finished here with what FastAPI cannot know: every error's problem+json
schema and codes (``app.core.problems``), and the headers the middleware and the write path
send. It depends on no setting, so the copy committed as ``openapi.json`` is the one every
deployment serves (``balances openapi`` writes it).

FastAPI's default docs page loads Swagger UI from a CDN, which a firewalled production network
(or this project's CI) cannot reach; operators get a blank page exactly when they need the docs.
"""

import json
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from app.core.problems import document_problems

ASSETS = Path(fastapi_offline.__file__).parent / "static"

OPENAPI_TAGS = [
    {"name": "balances", "description": "Create, change, list, check and consume balances."},
    {"name": "reservations", "description": "Settle amounts reserved by `check` with a `lock`."},
    {"name": "ledger", "description": "The append-only history of every change."},
    {"name": "health", "description": "Probes and Prometheus metrics for operators."},
]

IDEMPOTENCY_KEY = "Idempotency-Key"
_REQUEST_ID = {
    "X-Request-ID": {
        "description": "The request's id: the caller's own `X-Request-ID` (1-200 printable "
        "ASCII characters), else a new one. Log lines and ledger entries carry it.",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
    }
}
_REPLAYED = {
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer to an earlier request with the "
        "same Idempotency-Key and body (nothing was applied again); absent otherwise.",
        "required": False,
        "schema": {"type": "string", "enum": ["true"]},
    }
}
# The answers a write stores under its Idempotency-Key, and so may replay.
_STORED = {"200", "404", "409", "422"}


def _document_headers(document: dict[str, Any]) -> None:
    for item in document["paths"].values():
        for operation in item.values():
            parameters = operation.get("parameters", [])
            idempotent = any(p["name"] == IDEMPOTENCY_KEY for p in parameters)
            for status, response in operation["responses"].items():
                replayed = _REPLAYED if idempotent and status in _STORED else {}
                response["headers"] = {**_REQUEST_ID, **replayed, **response.get("headers", {})}


def install_contract(app: FastAPI) -> None:
    """Serve FastAPI's document finished as the contract (built once, on first use)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            document_problems(document)
            _document_headers(document)
            schemas = document["components"]["schemas"]
            document["components"]["schemas"] = dict(sorted(schemas.items()))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_docs(app: FastAPI) -> None:
    app.mount("/docs-assets", StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Balances API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True, "displayRequestDuration": True},
        )


def document_text(document: dict[str, Any]) -> str:
    """The document as committed in ``openapi.json``: stable, reviewable diffs."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
