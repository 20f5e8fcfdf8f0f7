"""Swagger UI at /docs, served from assets shipped in a Python package.

FastAPI's default page loads Swagger UI from a CDN, which a firewalled production network (or
this project's CI) cannot reach; operators get a blank page exactly when they need the docs.
"""

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).parent / "static"

OPENAPI_TAGS = [
    {"name": "balances", "description": "Create, change, list, check and consume balances."},
    {"name": "reservations", "description": "Settle amounts reserved by `check` with a `lock`."},
    {"name": "ledger", "description": "The append-only history of every change."},
    {"name": "health", "description": "Probes and Prometheus metrics for operators."},
]


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
