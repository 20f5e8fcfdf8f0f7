"""The one place errors become HTTP responses: RFC 9457 problem JSON with a stable ``code``."""

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from app.core.errors import DomainError, ServiceUnavailable
from app.core.json import ExactJSONResponse
from app.core.reply import Reply

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


class ProblemResponse(ExactJSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def _problem(status: int, code: str, title: str, message: str, **extra: Any) -> ProblemResponse:
    body = {
        "type": f"urn:balances:problem:{code}",
        "title": title,
        "status": status,
        "detail": message,
        "code": code,
        "message": message,
        **{key: value for key, value in extra.items() if value is not None},
    }
    return ProblemResponse(body, status_code=status)


def problem_response(error: DomainError) -> ProblemResponse:
    response = _problem(error.status, error.code, error.title, error.message, **error.extra)
    if error.headers:
        response.headers.update(error.headers)
    return response


def problem_reply(error: DomainError) -> Reply:
    """The same problem, rendered to bytes (the write path stores and replays these)."""
    response = problem_response(error)
    headers = dict(error.headers) if error.headers else {}
    return Reply(response.status_code, bytes(response.body), PROBLEM_MEDIA_TYPE, headers)


def _error_item(error: Any) -> dict[str, Any]:
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    loc = [part for part in error.get("loc", ()) if part != "body"] or ["body"]
    return {"loc": loc, "msg": message}


async def _on_domain_error(request: Request, error: Exception) -> ProblemResponse:
    assert isinstance(error, DomainError)
    return problem_response(error)


_NOT_JSON = "the body is not valid JSON (NaN, Infinity and lone surrogates included)"


async def _on_validation_error(request: Request, error: Exception) -> ProblemResponse:
    assert isinstance(error, RequestValidationError)
    items = [_error_item(e) for e in error.errors()]
    if any(e.get("type") == "json_invalid" for e in error.errors()):
        items = [{"loc": ["body"], "msg": _NOT_JSON}]
    first = items[0] if items else {"loc": ["body"], "msg": "invalid"}
    where = ".".join(str(part) for part in first["loc"])
    message = f"Invalid request: {where}: {first['msg']}."
    return _problem(422, "invalid_request", "Invalid request", message, errors=items)


async def _on_http_error(request: Request, error: Exception) -> ProblemResponse:
    assert isinstance(error, HTTPException)
    code = HTTP_CODES.get(error.status_code, "http_error")
    response = _problem(error.status_code, code, str(error.detail), f"{error.detail}.")
    if error.headers:
        response.headers.update(error.headers)
    return response


# SQLSTATEs that mean "try again shortly", not "bug": the transaction was rolled back whole.
_RETRYABLE = {
    "55P03": ("lock_timeout", "A balance stayed locked by another request for too long."),
    "57014": ("statement_timeout", "The database took too long to answer."),
    "40001": ("serialization_failure", "A concurrent change conflicted with this request."),
    "40P01": ("deadlock_detected", "A concurrent change conflicted with this request."),
    "23505": ("write_conflict", "A concurrent change conflicted with this request."),
}
# The server is going away or not there: admin/crash shutdown, cannot connect now.
_UNAVAILABLE = {"57P01", "57P02", "57P03"}


def is_disconnect(error: DBAPIError) -> bool:
    """Whether the connection (or the server) went away, rather than the statement failing."""
    sqlstate = getattr(error.orig, "sqlstate", None)
    return (
        error.connection_invalidated
        or sqlstate in _UNAVAILABLE
        or (sqlstate or "").startswith("08")
        or (isinstance(error, OperationalError) and sqlstate is None)
    )


def database_problem(error: DBAPIError) -> DomainError:
    """The 503 for a database error that says nothing was applied; raises nothing."""
    if is_disconnect(error):
        return ServiceUnavailable("database_unavailable", "The database is unreachable; retry.")
    return database_code(getattr(error.orig, "sqlstate", None))


def database_code(sqlstate: str | None) -> DomainError:
    """The 503 for a statement the database refused (by SQLSTATE): nothing was applied."""
    if sqlstate in _RETRYABLE:
        code, message = _RETRYABLE[sqlstate]
        return ServiceUnavailable(code, f"{message} Nothing was applied; retry.")
    return ServiceUnavailable("database_error", "The database refused the change; retry.")


async def _on_database_error(request: Request, error: Exception) -> ProblemResponse:
    assert isinstance(error, DBAPIError)
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate in _RETRYABLE or is_disconnect(error):
        if is_disconnect(error):
            logger.warning("database unavailable: %s", type(error.orig).__name__)
        return problem_response(database_problem(error))
    return await _on_unexpected_error(request, error)


async def _on_pool_timeout(request: Request, error: Exception) -> ProblemResponse:
    # Every pooled connection is busy for longer than the pool timeout: a fault, not a bug.
    return problem_response(ServiceUnavailable("database_busy", "No database connection is free."))


async def _on_unexpected_error(request: Request, error: Exception) -> ProblemResponse:
    # Details go to the log, never to the client: no stack traces or SQL in responses.
    logger.exception("unhandled error", exc_info=error)
    message = "The server failed to handle this request."
    return _problem(500, "internal_error", "Internal error", message)


_MEANING = {
    401: "Missing, unknown or revoked API key.",
    403: "The API key lacks the scope this operation needs.",
    404: "Nothing matches; nothing changed.",
    408: "The request body did not arrive in time; nothing was read and nothing changed. The "
    "server closes the connection.",
    409: "Conflict with the current state; nothing changed.",
    413: "Body too large; nothing was read and nothing changed.",
    415: "The body is not JSON (send `Content-Type: application/json`); nothing changed.",
    422: "Invalid input; nothing changed. `errors` lists each input at fault.",
    500: "A bug in the service: report it with the response's `X-Request-ID` (the log line of "
    "the failure names it).",
    503: "The service could not serve the request now. Nothing was applied, except with "
    "`outcome_unknown`, where it is not known whether it was. Retry after `Retry-After` "
    "seconds with the same Idempotency-Key: a write is applied at most once.",
}
# Codes of answers no operation gives: a path or a method that does not exist.
_ROUTING_CODES = {"not_found", "method_not_allowed"}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_CODE_REF = {"$ref": "#/components/schemas/ProblemCode"}
_RESPONSE_HEADERS = {
    "401": {
        "WWW-Authenticate": {
            "description": "`Bearer`: send an API key as `Authorization: Bearer sk_…`.",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    "503": {
        "Retry-After": {
            "description": "Seconds to wait before retrying, with the same Idempotency-Key.",
            "required": True,
            "schema": {"type": "integer", "minimum": 0},
        }
    },
}


def stable_codes() -> dict[str, tuple[int | None, str]]:
    """Every ``code`` the server can send, with its HTTP status and what it means: derived from
    the error classes (once every domain is imported), never listed by hand."""
    found: dict[str, tuple[int | None, str]] = {}
    pending: list[type[DomainError]] = [DomainError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls is ServiceUnavailable:
            found.update((code, (cls.status, why)) for code, why in cls.CODES.items())
        elif cls is not DomainError:
            found[cls.code] = (cls.status, cls.title)
    found["invalid_request"] = (422, "Invalid request")
    for status, code in HTTP_CODES.items():
        found.setdefault(code, (status, HTTPStatus(status).phrase))
    found["http_error"] = (None, "Any other error the HTTP layer answers")
    found["internal_error"] = (500, "Internal error: a bug (the log has the details)")
    return dict(sorted(found.items()))


def codes_by_status() -> dict[int, list[str]]:
    """Every stable ``code``, by HTTP status."""
    found: dict[int, list[str]] = {}
    for code, (status, _) in stable_codes().items():
        if status is not None:
            found.setdefault(status, []).append(code)
    return found


def _code_schema(codes: dict[str, tuple[int | None, str]]) -> dict[str, Any]:
    listed = "\n".join(
        f"- `{code}` ({status or 'any status'}): {meaning[0].upper()}{meaning[1:]}."
        for code, (status, meaning) in codes.items()
    )
    return {
        "type": "string",
        "enum": list(codes),
        "title": "ProblemCode",
        "description": f"The stable, machine-readable kind of a problem:\n\n{listed}",
    }


def _description(status: int, codes: list[str]) -> str:
    listed = ", ".join(f"`{code}`" for code in codes if code not in _ROUTING_CODES)
    return f"{_MEANING.get(status, 'Error.')} Codes: {listed}." if listed else _MEANING[status]


def document_problems(document: dict[str, Any]) -> None:
    """The OpenAPI document's side of every error: each is `application/problem+json` with the
    one ``Problem`` schema, whose ``code`` is the ``ProblemCode`` enum, and the headers it
    carries; each status says which codes it may carry."""
    codes = stable_codes()
    by_status = codes_by_status()
    schemas = document["components"]["schemas"]
    schemas["ProblemCode"] = _code_schema(codes)
    schemas["Problem"]["properties"]["code"] = {**_CODE_REF, "examples": ["balance_not_found"]}
    for item in document["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                if PROBLEM_MEDIA_TYPE not in response.get("content", {}):
                    continue
                response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF}}
                response["description"] = _description(int(status), by_status.get(int(status), []))
                headers = _RESPONSE_HEADERS.get(status, {})
                response["headers"] = {**response.get("headers", {}), **headers}


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(DBAPIError, _on_database_error)
    app.add_exception_handler(PoolTimeout, _on_pool_timeout)
    app.add_exception_handler(Exception, _on_unexpected_error)
