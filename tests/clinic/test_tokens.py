"""The token refresh job: which tokens it refreshes, and what a refusal or an outage does."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from frontdesk.clinic.connections import link_instagram, load_access_token
from frontdesk.clinic.doctors import create_doctor
from frontdesk.clinic.tokens import refresh_expiring_tokens
from frontdesk.clock import FixedClock
from frontdesk.db.engine import transaction
from frontdesk.db.tables import doctor_instagram
from frontdesk.db.tenancy import doctor_transaction
from frontdesk.runtime import Runtime
from frontdesk.testing.fake_graph import FakeGraphApi
from tests.conftest import unscoped

IG_ACCOUNT = "17841400000000777"


async def connected_doctor(
    runtime: Runtime, fake_graph: FakeGraphApi, *, expires_in: timedelta
) -> tuple[str, str]:
    """A doctor linked with a real long-lived token from the fake: (doctor id, token)."""
    fake_graph.add_instagram_account(IG_ACCOUNT, "clinic")
    short = await runtime.oauth.exchange_instagram_code(
        code=fake_graph.issue_code(IG_ACCOUNT), redirect_uri="http://frontdesk.test/cb"
    )
    long_lived = await runtime.oauth.instagram_long_lived_token(short.access_token)
    async with transaction(runtime.engine) as connection:
        doctor = await create_doctor(
            connection, name="Dr A", email="a@clinic.test", now=runtime.clock.now()
        )
        await link_instagram(
            connection,
            runtime.keyring,
            doctor_id=doctor.id,
            instagram_page_id=IG_ACCOUNT,
            access_token=long_lived.access_token,
            token_expires_at=runtime.clock.now() + expires_in,
            now=runtime.clock.now(),
        )
    return doctor.id, long_lived.access_token


async def refresh(runtime: Runtime) -> int:
    return await refresh_expiring_tokens(
        runtime.engine, runtime.keyring, runtime.oauth, runtime.clock
    )


async def stored(runtime: Runtime) -> tuple[str, object]:
    async with unscoped(runtime) as connection:
        row = (await connection.execute(select(doctor_instagram))).one()
    return row.status, row.token_expires_at


async def test_a_token_a_day_old_expiring_within_30_days_is_refreshed_and_audited(
    runtime: Runtime, fake_graph: FakeGraphApi, clock: FixedClock
) -> None:
    doctor_id, old = await connected_doctor(runtime, fake_graph, expires_in=timedelta(days=20))
    clock.advance(days=2)

    assert await refresh(runtime) == 1

    async with doctor_transaction(runtime.engine, doctor_id) as connection:
        new = await load_access_token(connection, runtime.keyring, doctor_id=doctor_id)
    status, expires_at = await stored(runtime)
    assert new != old
    assert status == "active"
    assert expires_at > clock.now() + timedelta(days=50)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("age", "expires_in"),
    [(timedelta(hours=12), timedelta(days=20)), (timedelta(days=2), timedelta(days=45))],
    ids=["younger-than-a-day", "far-from-expiry"],
)
async def test_tokens_too_young_or_far_from_expiry_are_left_alone(
    runtime: Runtime,
    fake_graph: FakeGraphApi,
    clock: FixedClock,
    age: timedelta,
    expires_in: timedelta,
) -> None:
    await connected_doctor(runtime, fake_graph, expires_in=expires_in + age)
    clock.advance(seconds=age.total_seconds())

    assert await refresh(runtime) == 0
    assert fake_graph.token_requests.count("refresh") == 0


async def test_a_refused_refresh_marks_the_connection_needs_reauth(
    runtime: Runtime, fake_graph: FakeGraphApi, clock: FixedClock
) -> None:
    _doctor_id, token = await connected_doctor(runtime, fake_graph, expires_in=timedelta(days=5))
    fake_graph.reject_token(token)
    clock.advance(days=2)

    assert await refresh(runtime) == 0

    assert (await stored(runtime))[0] == "needs_reauth"


async def test_a_meta_outage_during_refresh_changes_nothing_and_is_tried_next_time(
    runtime: Runtime, fake_graph: FakeGraphApi, clock: FixedClock
) -> None:
    await connected_doctor(runtime, fake_graph, expires_in=timedelta(days=5))
    fake_graph.fail_next(endpoint="refresh", status=503, code=2)
    clock.advance(days=2)

    assert await refresh(runtime) == 0
    assert (await stored(runtime))[0] == "active"
    assert await refresh(runtime) == 1
