"""Sign-in, sign-out, accepting an invite, and a doctor's API tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from frontdesk.api.deps import (
    SESSION_COOKIE,
    AuthenticatedDep,
    DoctorId,
    RuntimeDep,
    open_session,
)
from frontdesk.api.errors import ApiError, error_responses, not_found
from frontdesk.api.schemas import (
    AcceptInvite,
    AccountOut,
    ApiTokenOut,
    CreatedApiToken,
    NewApiToken,
    SignedIn,
    SignIn,
)
from frontdesk.auth.accounts import (
    Account,
    InviteInvalidError,
    SignInRefused,
    accept_invite,
    sign_in,
)
from frontdesk.auth.api_tokens import create_api_token, list_api_tokens, revoke_api_token
from frontdesk.auth.passwords import WeakPasswordError
from frontdesk.auth.sessions import end_session
from frontdesk.db.engine import transaction
from frontdesk.runtime import Runtime

router = APIRouter(prefix="/api/v1", tags=["auth"])
ERRORS = error_responses(401, 403)


def _account_out(account: Account) -> AccountOut:
    return AccountOut(
        id=account.id,
        email=account.email,
        role=account.role,
        doctor_id=account.doctor_id,
    )


async def _open_session(
    runtime: Runtime, request: Request, response: Response, account: Account
) -> SignedIn:
    csrf_token = await open_session(runtime, request, response, account.id)
    return SignedIn(account=_account_out(account), csrf_token=csrf_token)


@router.post(
    "/auth/sign-in",
    responses=error_responses(401, 429),
    summary="Anyone: sign in with email and password; sets the session cookie.",
)
async def sign_in_endpoint(
    body: SignIn, request: Request, response: Response, runtime: RuntimeDep
) -> SignedIn:
    async with transaction(runtime.engine) as connection:
        result = await sign_in(
            connection, email=body.email, password=body.password, now=runtime.clock.now()
        )
    if isinstance(result, SignInRefused) and result.retry_after is not None:
        headers = {"Retry-After": str(result.retry_after)}
        raise ApiError(429, "sign_in_throttled", result.reason, headers=headers)
    if isinstance(result, SignInRefused):
        raise ApiError(401, "invalid_credentials", result.reason)
    return await _open_session(runtime, request, response, result)


@router.post(
    "/auth/invites/accept",
    responses=error_responses(400),
    summary="Anyone with an invite: set the password and sign in.",
)
async def accept_invite_endpoint(
    body: AcceptInvite, request: Request, response: Response, runtime: RuntimeDep
) -> SignedIn:
    try:
        async with transaction(runtime.engine) as connection:
            account = await accept_invite(
                connection, token=body.token, password=body.password, now=runtime.clock.now()
            )
    except InviteInvalidError as error:
        raise ApiError(400, "invite_invalid", error.reason) from error
    except WeakPasswordError as error:
        raise ApiError(422, "weak_password", error.reason) from error
    return await _open_session(runtime, request, response, account)


@router.post(
    "/auth/sign-out",
    status_code=204,
    responses=ERRORS,
    summary="A signed-in doctor or operator: end this session.",
)
async def sign_out_endpoint(
    request: Request, response: Response, runtime: RuntimeDep, principal: AuthenticatedDep
) -> None:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        async with transaction(runtime.engine) as connection:
            await end_session(connection, token)
    response.delete_cookie(SESSION_COOKIE, path="/")


@router.get("/tokens", responses=ERRORS, summary="A doctor: their API tokens (never the secrets).")
async def list_tokens(runtime: RuntimeDep, doctor_id: DoctorId) -> list[ApiTokenOut]:
    async with transaction(runtime.engine) as connection:
        tokens = await list_api_tokens(connection, doctor_id)
    return [ApiTokenOut(**token.__dict__) for token in tokens]


@router.post(
    "/tokens",
    status_code=201,
    responses=ERRORS,
    summary="A doctor: create an API token; the token is shown only in this answer.",
)
async def create_token(
    body: NewApiToken, runtime: RuntimeDep, doctor_id: DoctorId
) -> CreatedApiToken:
    async with transaction(runtime.engine) as connection:
        record, token = await create_api_token(
            connection, doctor_id=doctor_id, name=body.name, now=runtime.clock.now()
        )
    return CreatedApiToken(**record.__dict__, token=token)


@router.delete(
    "/tokens/{token_id}",
    status_code=204,
    responses=error_responses(401, 403, 404),
    summary="A doctor: revoke one of their API tokens.",
)
async def revoke_token(token_id: str, runtime: RuntimeDep, doctor_id: DoctorId) -> None:
    async with transaction(runtime.engine) as connection:
        revoked = await revoke_api_token(
            connection, doctor_id=doctor_id, token_id=token_id, now=runtime.clock.now()
        )
    if not revoked:
        raise not_found("API token")
