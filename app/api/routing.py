"""``CommandRoute``: FastAPI documents the operation; the request runs without its machinery.

FastAPI's dependency solving (query parsing, a cache key per dependency, the sub-dependency
walk) was a quarter of the server's CPU per request. A command route keeps the endpoint's
signature as the OpenAPI truth, but serves each request in straight-line code: read the body,
parse it exactly and validate it once, authenticate with the very functions the dependencies
use, build the envelope, and call the endpoint with those values.

An endpoint using it takes exactly ``params`` (its body model), ``principal`` (``ReadKey`` or
``WriteKey``), ``envelope`` (``EnvelopeDep``) and ``request``.
"""

import json
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, get_args, get_type_hints

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.params import Depends
from pydantic import BaseModel, ValidationError

from app.auth.dependencies import ScopeCheck, authenticate, authorize, bearer_secret
from app.batcher.batcher import Batcher
from app.batcher.protocols import Command
from app.core.errors import UnsupportedMediaType
from app.core.json import ExactJSONRoute, is_json, loads_exact
from app.idempotency.dependencies import envelope_for, idempotency_key

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Coroutine[Any, Any, Response]])
_LOGGED = ("customer_id", "feature_id")  # noted for the request log line


class CommandRoute(ExactJSONRoute):
    def get_route_handler(self) -> Handler:
        hints = get_type_hints(self.endpoint, include_extras=True)
        model: type[BaseModel] = get_args(hints["params"])[0]
        scope = next(
            meta.dependency.scope
            for meta in get_args(hints["principal"])[1:]
            if isinstance(meta, Depends) and isinstance(meta.dependency, ScopeCheck)
        )
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            if not is_json(request.headers.get("content-type")):
                raise UnsupportedMediaType(
                    "Send the body as JSON (Content-Type: application/json)."
                )
            body = _parse(await request.body())
            if isinstance(body, dict):
                state = request.scope.setdefault("state", {})
                for field in _LOGGED:
                    if isinstance(body.get(field), str):
                        state[field] = body[field]
            try:
                params = model.model_validate(body)
            except ValidationError as error:
                raise RequestValidationError(
                    [{**e, "loc": ("body", *e["loc"])} for e in error.errors()]
                ) from None
            principal = await authenticate(request, bearer_secret(request))
            authorize(principal, scope)
            key = await idempotency_key(request.headers.get("idempotency-key"))
            envelope = envelope_for(request, principal, key, body)
            response: Response = await endpoint(
                params=params, principal=principal, envelope=envelope, request=request
            )
            return response

        return handler


def _parse(raw: bytes) -> Any:
    """The body as exact JSON; a malformed one is reported as FastAPI reports it."""
    try:
        return loads_exact(raw)
    except json.JSONDecodeError as error:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", error.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": error.msg},
                }
            ]
        ) from None


def command(router: APIRouter, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
    """``@router.post(path, **options)``, served by a ``CommandRoute``."""

    def register(endpoint: Endpoint) -> Endpoint:
        router.add_api_route(
            path, endpoint, methods=["POST"], route_class_override=CommandRoute, **options
        )
        return endpoint

    return register


async def submit(request: Request, command: Command) -> Response:
    """Hand ``command`` to the app's write path and answer with what it decided."""
    batcher: Batcher = request.app.state.batcher
    return (await batcher.submit(command)).to_response()
