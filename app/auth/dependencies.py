"""Authentication and scope checks for endpoints (``Authorization: Bearer sk_…``)."""

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
    return await authenticate(request, credentials.credentials if credentials else None)


async def authenticate(request: Request, secret: str | None) -> Principal:
    """The caller behind a bearer secret (None: no usable ``Authorization`` header)."""
    if request.app.state.settings.insecure_no_auth:
        return UNAUTHENTICATED_DEVELOPER
    if secret is None:
        raise Unauthorized("Send an API key as 'Authorization: Bearer sk_…'.")
    authenticator: Authenticator = request.app.state.authenticator
    principal = authenticator.cached(secret)
    if principal is None:
        async with request.app.state.database.sessionmaker() as session:
            principal = await authenticator.authenticate(session, secret)
    if principal is None:
        raise Unauthorized("This API key is unknown or has been revoked.")
    request.state.api_key_id = principal.key_id  # for the request log line
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def authorize(principal: Principal, scope: Scope) -> None:
    if not principal.allows(scope):
        raise Forbidden(f"This API key lacks the '{scope}' scope this operation needs.")


def bearer_secret(request: Request) -> str | None:
    """The secret of ``Authorization: Bearer <secret>``, as ``bearer`` reads it."""
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    return (secret or None) if scheme.lower() == "bearer" else None


class ScopeCheck:
    """The dependency requiring ``scope``; also tells a fast route which scope it needs."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def __call__(self, principal: PrincipalDep) -> Principal:
        authorize(principal, self.scope)
        return principal


def require(scope: Scope) -> ScopeCheck:
    return ScopeCheck(scope)


ReadKey = Annotated[Principal, Depends(require(Scope.READ))]
WriteKey = Annotated[Principal, Depends(require(Scope.WRITE))]
