"""Connect Instagram: the OAuth state, both logins' callbacks, page choice, and disconnect.

Nothing is stored until every Meta call of a flow has succeeded, and an account another doctor
holds is refused before Frontdesk subscribes to it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from frontdesk.audit import write_audit
from frontdesk.clinic.connections import (
    DISCONNECTED,
    InstagramConnection,
    PageOwnedByAnotherDoctorError,
    connections_elsewhere,
    find_connection,
    link_instagram,
    load_access_token,
    unlink_instagram,
)
from frontdesk.clock import Clock
from frontdesk.crypto import Keyring
from frontdesk.db.tables import (
    facebook_page_choices,
    oauth_states,
    webhook_events,
)
from frontdesk.db.tenancy import doctor_transaction, system_transaction
from frontdesk.errors import FrontdeskError
from frontdesk.graph.client import FACEBOOK_LOGIN, INSTAGRAM_LOGIN
from frontdesk.graph.oauth import FacebookPage, MetaOAuthClient, OAuthStepError
from frontdesk.handlers.outbound import RESUME_REPLIES
from frontdesk.ids import IdFactory, new_id
from frontdesk.inbox.queue import FINAL_STATUSES, QUEUED, enqueue_internal_event
from frontdesk.webhooks.split import conversation_ordering_key

STATE_LIFETIME = timedelta(minutes=10)
PAGE_CHOICE_LIFETIME = timedelta(minutes=15)
STATE_KEY_PURPOSE = "frontdesk oauth state v1"


class StateInvalidError(FrontdeskError):
    """The OAuth state is missing, forged, expired, already used, or another doctor's."""


class NoInstagramPageError(FrontdeskError):
    """None of the Facebook Pages the doctor manages has an Instagram professional account."""


class PageChoiceInvalidError(FrontdeskError):
    """The page choice is unknown, expired, another doctor's, or names a page not offered."""


@dataclass(frozen=True)
class PageOption:
    page_id: str
    name: str
    instagram_account_id: str


@dataclass(frozen=True)
class ConnectResult:
    """Either a connection, or a choice the doctor must make among several pages."""

    connection: InstagramConnection | None = None
    page_choice_id: str | None = None
    options: tuple[PageOption, ...] = ()


@dataclass(frozen=True)
class DisconnectResult:
    connection: InstagramConnection
    unsubscribed: bool


class ConnectService:
    def __init__(
        self,
        engine: AsyncEngine,
        keyring: Keyring,
        oauth: MetaOAuthClient,
        clock: Clock,
        *,
        redirect_uri: str,
        make_id: IdFactory = new_id,
    ) -> None:
        self._engine = engine
        self._keyring = keyring
        self._oauth = oauth
        self._clock = clock
        self._redirect_uri = redirect_uri
        self._make_id = make_id
        self._state_key = keyring.derive_key(STATE_KEY_PURPOSE)

    # --- starting -------------------------------------------------------------------------

    async def authorize_url(self, doctor_id: str, login_kind: str) -> str:
        """A Meta authorize URL with a fresh state: random, signed, bound to the doctor."""
        nonce = secrets.token_urlsafe(24)
        state = f"{nonce}.{self._sign(nonce, doctor_id, login_kind)}"
        now = self._clock.now()
        async with doctor_transaction(self._engine, doctor_id) as connection:
            await connection.execute(
                oauth_states.insert().values(
                    state_hash=_hash(state),
                    doctor_id=doctor_id,
                    login_kind=login_kind,
                    created_at=now,
                    expires_at=now + STATE_LIFETIME,
                )
            )
        if login_kind == FACEBOOK_LOGIN:
            return self._oauth.facebook_authorize_url(redirect_uri=self._redirect_uri, state=state)
        return self._oauth.instagram_authorize_url(redirect_uri=self._redirect_uri, state=state)

    def _sign(self, nonce: str, doctor_id: str, login_kind: str) -> str:
        message = f"{nonce}|{doctor_id}|{login_kind}".encode()
        return hmac.new(self._state_key, message, hashlib.sha256).hexdigest()[:32]

    async def consume_state(self, doctor_id: str, state: str | None) -> str:
        """Check the state is this doctor's, fresh and unused; spend it; return its login."""
        nonce, _, signature = (state or "").partition(".")
        async with doctor_transaction(self._engine, doctor_id) as connection:
            row = (
                await connection.execute(
                    select(oauth_states)
                    .where(oauth_states.c.state_hash == _hash(state or ""))
                    .with_for_update()
                )
            ).first()
            now = self._clock.now()
            valid = (
                row is not None
                and row.doctor_id == doctor_id
                and row.used_at is None
                and row.expires_at > now
                and hmac.compare_digest(signature, self._sign(nonce, doctor_id, row.login_kind))
            )
            if not valid or row is None:
                raise StateInvalidError("this sign-in link is invalid or expired; start again")
            await connection.execute(
                update(oauth_states)
                .where(oauth_states.c.state_hash == row.state_hash)
                .values(used_at=now)
            )
            return str(row.login_kind)

    # --- finishing --------------------------------------------------------------------------

    async def complete(self, doctor_id: str, login_kind: str, code: str) -> ConnectResult:
        if login_kind == FACEBOOK_LOGIN:
            return await self._complete_facebook(doctor_id, code)
        return await self._complete_instagram(doctor_id, code)

    async def _complete_instagram(self, doctor_id: str, code: str) -> ConnectResult:
        short_lived = await self._oauth.exchange_instagram_code(
            code=code, redirect_uri=self._redirect_uri
        )
        token = await self._oauth.instagram_long_lived_token(short_lived.access_token)
        account = await self._oauth.instagram_account(token.access_token)
        await self._refuse_if_owned_elsewhere(doctor_id, [account.user_id])
        await self._oauth.subscribe_instagram_account(token.access_token)
        linked = await self._link(
            doctor_id,
            instagram_page_id=account.user_id,
            facebook_page_id=None,
            username=account.username,
            access_token=token.access_token,
            token_expires_at=token.expires_at,
            login_kind=INSTAGRAM_LOGIN,
        )
        return ConnectResult(connection=linked)

    async def _complete_facebook(self, doctor_id: str, code: str) -> ConnectResult:
        user_token = await self._oauth.exchange_facebook_code(
            code=code, redirect_uri=self._redirect_uri
        )
        long_lived = await self._oauth.facebook_long_lived_user_token(user_token.access_token)
        pages = [
            page
            for page in await self._oauth.facebook_pages(long_lived.access_token)
            if page.instagram_account_id
        ]
        if not pages:
            raise NoInstagramPageError(
                "none of your Facebook Pages has an Instagram professional account linked"
            )
        if len(pages) == 1:
            return ConnectResult(connection=await self._connect_page(doctor_id, pages[0]))
        return await self._offer_pages(doctor_id, pages)

    async def _offer_pages(self, doctor_id: str, pages: list[FacebookPage]) -> ConnectResult:
        choice_id = self._make_id()
        document = [
            {
                "page_id": page.page_id,
                "name": page.name,
                "access_token": page.access_token,
                "instagram_account_id": page.instagram_account_id,
            }
            for page in pages
        ]
        now = self._clock.now()
        async with doctor_transaction(self._engine, doctor_id) as connection:
            await connection.execute(
                facebook_page_choices.insert().values(
                    id=choice_id,
                    doctor_id=doctor_id,
                    pages_encrypted=self._keyring.encrypt(
                        json.dumps(document).encode(), _choice_associated_data(choice_id)
                    ),
                    created_at=now,
                    expires_at=now + PAGE_CHOICE_LIFETIME,
                )
            )
        return ConnectResult(page_choice_id=choice_id, options=_options(pages))

    async def page_options(self, doctor_id: str, choice_id: str) -> tuple[PageOption, ...]:
        return _options(await self._load_choice(doctor_id, choice_id))

    async def choose_page(
        self, doctor_id: str, choice_id: str, page_id: str
    ) -> InstagramConnection:
        pages = await self._load_choice(doctor_id, choice_id)
        chosen = next((page for page in pages if page.page_id == page_id), None)
        if chosen is None:
            raise PageChoiceInvalidError("that page was not one of the choices")
        connection = await self._connect_page(doctor_id, chosen)
        async with doctor_transaction(self._engine, doctor_id) as db:
            await db.execute(
                facebook_page_choices.delete().where(
                    facebook_page_choices.c.id == choice_id,
                    facebook_page_choices.c.doctor_id == doctor_id,
                )
            )
        return connection

    async def _load_choice(self, doctor_id: str, choice_id: str) -> list[FacebookPage]:
        async with doctor_transaction(self._engine, doctor_id) as connection:
            row = (
                await connection.execute(
                    select(facebook_page_choices).where(
                        facebook_page_choices.c.id == choice_id,
                        facebook_page_choices.c.doctor_id == doctor_id,
                    )
                )
            ).first()
        if row is None or row.expires_at <= self._clock.now():
            raise PageChoiceInvalidError("this page choice is unknown or expired; start again")
        document = json.loads(
            self._keyring.decrypt(row.pages_encrypted, _choice_associated_data(choice_id))
        )
        return [
            FacebookPage(
                page_id=item["page_id"],
                name=item["name"],
                access_token=item["access_token"],
                instagram_account_id=item["instagram_account_id"],
            )
            for item in document
        ]

    async def _connect_page(self, doctor_id: str, page: FacebookPage) -> InstagramConnection:
        assert page.instagram_account_id is not None
        await self._refuse_if_owned_elsewhere(doctor_id, [page.instagram_account_id, page.page_id])
        await self._oauth.subscribe_facebook_page(page.page_id, page.access_token)
        return await self._link(
            doctor_id,
            instagram_page_id=page.instagram_account_id,
            facebook_page_id=page.page_id,
            username=page.name,
            access_token=page.access_token,
            token_expires_at=None,
            login_kind=FACEBOOK_LOGIN,
        )

    async def _refuse_if_owned_elsewhere(self, doctor_id: str, page_ids: list[str]) -> None:
        async with system_transaction(self._engine) as connection:
            others = await connections_elsewhere(connection, doctor_id, page_ids)
        if any(row.status != DISCONNECTED for row in others):
            raise PageOwnedByAnotherDoctorError("that account is already linked to another doctor")

    async def _link(self, doctor_id: str, **values: Any) -> InstagramConnection:
        """Store the connection and queue what waited for it, in one transaction."""
        now = self._clock.now()
        async with doctor_transaction(self._engine, doctor_id) as connection:
            linked = await link_instagram(
                connection, self._keyring, doctor_id=doctor_id, now=now, **values
            )
            await enqueue_internal_event(
                connection,
                self._keyring,
                kind=RESUME_REPLIES,
                event_key=f"resume:{doctor_id}:{self._make_id()}",
                doctor_id=doctor_id,
                ordering_key=conversation_ordering_key(None, f"doctor:{doctor_id}"),
                payload={},
                now=now,
            )
        return linked

    # --- status, disconnect, unrouted -------------------------------------------------------

    async def disconnect(self, doctor_id: str) -> DisconnectResult:
        """Unsubscribe at Meta (best effort, reported), then forget the token."""
        async with doctor_transaction(self._engine, doctor_id) as connection:
            existing = await find_connection(connection, doctor_id)
            token = await load_access_token(connection, self._keyring, doctor_id=doctor_id)
        unsubscribed = False
        if existing is not None and token is not None:
            unsubscribed = await self._unsubscribe(existing, token)
        async with doctor_transaction(self._engine, doctor_id) as connection:
            gone = await unlink_instagram(connection, doctor_id=doctor_id, now=self._clock.now())
        return DisconnectResult(connection=gone, unsubscribed=unsubscribed)

    async def _unsubscribe(self, existing: InstagramConnection, token: str) -> bool:
        try:
            if existing.login_kind == FACEBOOK_LOGIN and existing.facebook_page_id:
                await self._oauth.unsubscribe_facebook_page(existing.facebook_page_id, token)
            else:
                await self._oauth.unsubscribe_instagram_account(token)
        except OAuthStepError:
            return False
        return True

    async def replay_unrouted(self, doctor_id: str) -> int:
        """Queue again this account's unknown_page events still within retention."""
        now = self._clock.now()
        async with doctor_transaction(self._engine, doctor_id) as connection:
            existing = await find_connection(connection, doctor_id)
            if existing is None or existing.status == DISCONNECTED:
                return 0
            pages = (existing.instagram_page_id, existing.facebook_page_id)
            page_ids = [page for page in pages if page]
            result = await connection.execute(
                update(webhook_events)
                .where(
                    webhook_events.c.page_id.in_(page_ids),
                    webhook_events.c.reason == "unknown_page",
                    webhook_events.c.status.in_(FINAL_STATUSES),
                    webhook_events.c.payload_encrypted.is_not(None),
                )
                .values(
                    status=QUEUED,
                    attempts=0,
                    available_at=now,
                    reason=None,
                    last_error=None,
                    finished_at=None,
                    updated_at=now,
                )
            )
            replayed = int(result.rowcount)
            await write_audit(
                connection,
                now=now,
                resource_type="instagram_connection",
                resource_id=existing.id,
                action="unrouted_events_replayed",
                status="success",
                doctor_id=doctor_id,
                metadata={"events": replayed},
            )
        return replayed


def _options(pages: list[FacebookPage]) -> tuple[PageOption, ...]:
    return tuple(
        PageOption(
            page_id=page.page_id,
            name=page.name,
            instagram_account_id=page.instagram_account_id or "",
        )
        for page in pages
    )


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _choice_associated_data(choice_id: str) -> bytes:
    return f"facebook_page_choices:{choice_id}".encode()
