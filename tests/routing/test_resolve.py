"""resolve_doctor_for_page: the origin task's page_id → doctor_id, with no default doctor."""

from __future__ import annotations

from frontdesk.clinic.connections import unlink_instagram
from frontdesk.db.engine import transaction
from frontdesk.routing.resolve import resolve_doctor_for_candidates, resolve_doctor_for_page
from frontdesk.runtime import Runtime
from tests.conftest import add_linked_doctor

IG_ID = "17841455512340001"
FB_PAGE_ID = "104000000000001"


async def test_returns_the_doctor_for_a_linked_instagram_account_id(runtime: Runtime) -> None:
    doctor = await add_linked_doctor(runtime, name="Dr A", page_id=IG_ID, token="t")

    async with transaction(runtime.engine) as connection:
        assert await resolve_doctor_for_page(connection, IG_ID, "corr-1") == doctor.id


async def test_returns_the_doctor_for_a_linked_facebook_page_id(runtime: Runtime) -> None:
    doctor = await add_linked_doctor(
        runtime, name="Dr A", page_id=IG_ID, token="t", facebook_page_id=FB_PAGE_ID
    )

    async with transaction(runtime.engine) as connection:
        assert await resolve_doctor_for_page(connection, FB_PAGE_ID) == doctor.id


async def test_returns_nothing_when_no_row_exists_even_with_exactly_one_doctor(
    runtime: Runtime,
) -> None:
    await add_linked_doctor(runtime, name="The only doctor", page_id=IG_ID, token="t")

    async with transaction(runtime.engine) as connection:
        assert await resolve_doctor_for_page(connection, "17849999999999999") is None
        assert await resolve_doctor_for_page(connection, "0") is None
        assert await resolve_doctor_for_page(connection, "") is None


async def test_an_unlinked_account_routes_nowhere(runtime: Runtime) -> None:
    doctor = await add_linked_doctor(runtime, name="Dr A", page_id=IG_ID, token="t")
    async with transaction(runtime.engine) as connection:
        await unlink_instagram(connection, doctor_id=doctor.id, now=runtime.clock.now())

    async with transaction(runtime.engine) as connection:
        assert await resolve_doctor_for_page(connection, IG_ID) is None


async def test_candidates_are_tried_in_order_and_the_first_match_wins(runtime: Runtime) -> None:
    first = await add_linked_doctor(runtime, name="Dr A", page_id=IG_ID, token="t")
    await add_linked_doctor(runtime, name="Dr B", page_id="17841466698760002", token="u")

    async with transaction(runtime.engine) as connection:
        found = await resolve_doctor_for_candidates(
            connection, [None, "unknown", IG_ID, "17841466698760002"]
        )
        nothing = await resolve_doctor_for_candidates(connection, [None, "", "unknown"])

    assert found == (first.id, IG_ID)
    assert nothing is None
