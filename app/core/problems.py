"""The one place errors become HTTP responses: RFC 9457 problem JSON with a stable ``code``."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, APIRouter
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from app.core.errors import DomainError, ServiceUnavailable
from app.core.json import ExactJSONResponse
from app.core.reply import Reply
from app.core.schemas import Problem

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
    404: "Nothing matches.",
    408: "The request did not arrive in time.",
    409: "Conflict with the current state; nothing changed.",
    413: "Body too large.",
    415: "The body is not JSON.",
    422: "Invalid input; nothing changed.",
    503: "Nothing was applied (or, with `outcome_unknown`, it is not known whether it was): "
    "retry after `Retry-After`, with the same Idempotency-Key.",
}


def codes_by_status() -> dict[int, list[str]]:
    """Every stable ``code``, by HTTP status, derived from the error classes themselves."""
    found: dict[int, set[str]] = {}
    pending: list[type[DomainError]] = [DomainError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        codes = ServiceUnavailable.CODES if cls is ServiceUnavailable else (cls.code,)
        if cls is not DomainError:
            found.setdefault(cls.status, set()).update(codes)
    found.setdefault(422, set()).add("invalid_request")
    for status, code in HTTP_CODES.items():
        found.setdefault(status, set()).add(code)
    return {status: sorted(codes) for status, codes in found.items()}


def document_problems(*routers: APIRouter) -> None:
    """Describe each operation's problem responses with the codes it may carry: derived from
    the error classes once every domain is imported, never listed by hand."""
    codes = codes_by_status()
    for route in (route for router in routers for route in router.routes):
        if not isinstance(route, APIRoute):
            continue
        for status, spec in route.responses.items():
            if isinstance(status, int) and spec.get("model") is Problem:
                listed = ", ".join(f"`{code}`" for code in codes.get(status, []))
                spec["description"] = f"{_MEANING.get(status, 'Error.')} Codes: {listed}."


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(DBAPIError, _on_database_error)
    app.add_exception_handler(PoolTimeout, _on_pool_timeout)
    app.add_exception_handler(Exception, _on_unexpected_error)
