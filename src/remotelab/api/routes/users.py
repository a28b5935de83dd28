"""Who the caller is; users and their API tokens (admins; anyone lists and revokes their
own tokens)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from remotelab.api.auth import NewToken, Role, TokenInfo, User
from remotelab.api.deps import ERROR_RESPONSES, GW, AuditRecord, Who, audited
from remotelab.api.models import TokenCreate, UserCreate, UserUpdate, Whoami
from remotelab.errors import PermissionDeniedError, UnknownAccountError

router = APIRouter(tags=["users"], responses=ERROR_RESPONSES)


@router.get("/whoami", response_model=Whoami)
def whoami(who: Who) -> Whoami:
    """The caller's user, role and labs."""
    return Whoami(user=who.user, role=who.role, labs=list(who.labs), token_id=who.token_id)


@router.get("/users", response_model=list[User])
def list_users(who: Who, gw: GW) -> list[User]:
    """Every user (admin)."""
    who.require(Role.admin, action="listing users")
    return gw.auth.users()


@router.post("/users", response_model=User, status_code=201)
def add_user(body: UserCreate, gw: GW, rec: Annotated[AuditRecord, audited("user.add")]) -> User:
    """Add a user (admin); 409 if the name is taken."""
    rec.who.require(Role.admin, action="adding users")
    rec.target, rec.status = body.name, 201
    rec.detail = {"role": body.role.value, "labs": body.labs}
    return gw.auth.add_user(body.name, body.role, labs=body.labs)


@router.patch("/users/{name}", response_model=User)
def update_user(
    name: str, body: UserUpdate, gw: GW, rec: Annotated[AuditRecord, audited("user.update")]
) -> User:
    """Change a user's role or disable them (admin)."""
    rec.who.require(Role.admin, action="changing users")
    rec.detail = body.model_dump(exclude_none=True, mode="json")
    user = gw.auth.user(name)
    if body.role is not None:
        user = gw.auth.set_role(name, body.role)
    if body.disabled is not None:
        user = gw.auth.set_disabled(name, body.disabled)
    return user


@router.get("/tokens", response_model=list[TokenInfo])
def list_tokens(who: Who, gw: GW, user: str | None = None) -> list[TokenInfo]:
    """Tokens (never their secrets): every user's for an admin, one's own otherwise."""
    if who.role != Role.admin:
        if user is not None and user != who.user:
            raise PermissionDeniedError("only an admin may list another user's tokens")
        user = who.user
    return gw.auth.tokens(user)


@router.post("/users/{name}/tokens", response_model=NewToken, status_code=201)
def create_token(
    name: str,
    gw: GW,
    rec: Annotated[AuditRecord, audited("token.create")],
    body: Annotated[TokenCreate | None, Body()] = None,
) -> NewToken:
    """A new token for a user (admin). Its secret is in this answer only."""
    rec.who.require(Role.admin, action="creating tokens")
    token = gw.auth.create_token(name, (body or TokenCreate()).description)
    rec.target, rec.status = token.id, 201
    rec.detail = {"user": name}
    return token


@router.delete("/tokens/{token_id}", response_model=TokenInfo)
def revoke_token(
    token_id: str, gw: GW, rec: Annotated[AuditRecord, audited("token.revoke")]
) -> TokenInfo:
    """Revoke a token: an admin any, a user their own."""
    who = rec.who
    try:
        info = gw.auth.token(token_id)
    except UnknownAccountError:
        who.require(Role.admin, action="revoking tokens")
        raise
    if info.user != who.user:
        who.require(Role.admin, action="revoking someone else's token")
    return gw.auth.revoke_token(token_id)


__all__ = ["router"]
