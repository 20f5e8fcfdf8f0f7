"""Exact JSON on the wire.

Quantities must never pass through ``float``: ``0.1 + 0.2`` has to be ``0.3`` and a 24-digit
amount has to survive a round trip. So request bodies are parsed with every non-integer number
as a ``Decimal`` (and ``NaN``/``Infinity``, which Python's parser accepts by default, refused),
and responses are written by an encoder that emits ``Decimal`` as a JSON number, digit for digit.
"""

import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

import simplejson
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel

from app.core.errors import UnsupportedMediaType
from app.core.reply import Reply


def _refuse_constant(name: str) -> Any:
    # Raised as a JSONDecodeError so FastAPI reports it like any other malformed body (422).
    raise json.JSONDecodeError(f"{name} is not a number", name, 0)


MAX_DEPTH = 32  # no request of ours nests deeper than 4; anything past this is an attack


def _is_text(value: str) -> bool:
    """Whether ``value`` is Unicode text: no lone surrogate, so it encodes as UTF-8."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _refusal(value: Any) -> str | None:
    """Why a parsed body is refused, or None. Iterative: recursion could overflow.

    - Containers nested deeper than MAX_DEPTH: later steps (fingerprints, validation) recurse.
    - A string, or an object key, with a lone surrogate: ``"\\ud800"`` is valid JSON syntax,
      and Python's parser also lets the UTF-8-encoded bytes of a surrogate through, but it is
      no text (I-JSON, RFC 7493, forbids it). It could be neither fingerprinted, logged nor
      stored as UTF-8, and a field that takes any string would otherwise carry it that far.
    """
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if not _is_text(item):
                return "a string holds a lone surrogate (\\ud800-\\udfff)"
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                return "nested too deeply"
            if isinstance(item, dict) and not all(_is_text(key) for key in item):
                return "an object key holds a lone surrogate (\\ud800-\\udfff)"
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return None


def loads_exact(raw: bytes | str) -> Any:
    try:
        parsed = json.loads(raw, parse_float=Decimal, parse_constant=_refuse_constant)
    except json.JSONDecodeError:
        raise
    except RecursionError as error:  # a few KiB of "[[[[" must be a 422, not a crash
        raise json.JSONDecodeError("nested too deeply", "", 0) from error
    except ValueError as error:  # an integer of more than 4300 digits, invalid UTF-8…
        raise json.JSONDecodeError(str(error), "", 0) from error
    refusal = _refusal(parsed)
    if refusal is not None:
        raise json.JSONDecodeError(refusal, "", 0)
    return parsed


def dumps_exact(content: Any) -> bytes:
    return simplejson.dumps(
        content, use_decimal=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")


class ExactJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_exact(await self.body())
            if isinstance(self._json, dict):  # for the request log line
                for field in ("customer_id", "feature_id"):
                    if isinstance(self._json.get(field), str):
                        self.scope.setdefault("state", {})[field] = self._json[field]
        return self._json


def is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class ExactJSONRoute(APIRoute):
    """Route class that hands endpoints an ``ExactJSONRequest`` so bodies parse exactly."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def exact_handler(request: Request) -> Response:
            if request.method == "POST" and not is_json(request.headers.get("content-type")):
                raise UnsupportedMediaType(
                    "Send the body as JSON (Content-Type: application/json)."
                )
            return await handler(ExactJSONRequest(request.scope, request.receive))

        return exact_handler


class ExactJSONResponse(JSONResponse):
    """Renders ``Decimal`` as JSON numbers (pydantic's JSON mode would turn them into strings)."""

    def render(self, content: Any) -> bytes:
        return dumps_exact(content)


def render(model: BaseModel, status_code: int = 200) -> ExactJSONResponse:
    """A response schema as exact JSON (Decimal stays Decimal until it is written)."""
    return ExactJSONResponse(model.model_dump(), status_code=status_code)


def render_reply(model: BaseModel, status: int = 200) -> Reply:
    """A response schema as exact JSON bytes, ready to send or to store."""
    return Reply(status, dumps_exact(model.model_dump()))
