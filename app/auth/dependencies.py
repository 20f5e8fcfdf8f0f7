"""Authentication and scope checks for endpoints (``Authorization: Bearer sk_…``)."""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth.errors import Forbidden, Unauthorized
from app.auth.models import Scope
from app.auth.service import UNAUTHENTICATED_DEVELOPER, Authenticator, Principal

bearer = HTTPBearer(
    auto_error=False,
    description="An API key secret (`sk_…`), created with `balances keys create`.",
)


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if request.app.state.settings.insecure_no_auth:
        return UNAUTHENTICATED_DEVELOPER
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Send an API key as 'Authorization: Bearer sk_…'.")
    authenticator: Authenticator = request.app.state.authenticator
    principal = authenticator.cached(credentials.credentials)
    if principal is None:
        async with request.app.state.database.sessionmaker() as session:
            principal = await authenticator.authenticate(session, credentials.credentials)
    if principal is None:
        raise Unauthorized("This API key is unknown or has been revoked.")
    request.state.api_key_id = principal.key_id  # for the request log line
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def authorize(principal: Principal, scope: Scope) -> None:
    if not principal.allows(scope):
        raise Forbidden(f"This API key lacks the '{scope}' scope this operation needs.")


def require(scope: Scope) -> Callable[[Principal], Awaitable[Principal]]:
    async def dependency(principal: PrincipalDep) -> Principal:
        authorize(principal, scope)
        return principal

    return dependency


ReadKey = Annotated[Principal, Depends(require(Scope.READ))]
WriteKey = Annotated[Principal, Depends(require(Scope.WRITE))]
