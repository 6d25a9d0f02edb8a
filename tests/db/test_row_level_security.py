"""PostgreSQL row-level security: a transaction sees only its own doctor's patient data."""

from __future__ import annotations

import httpx2
import pytest
from sqlalchemy import select, text

from frontdesk.db.engine import transaction
from frontdesk.db.tables import conversations, doctor_instagram, messages, patients
from frontdesk.db.tenancy import doctor_transaction, system_transaction
from frontdesk.runtime import Runtime
from frontdesk.testing import payloads
from tests.conftest import add_linked_doctor, post_delivery, recent_ms

PAGE_A = "17841455512340001"
PAGE_B = "17841466698760002"
TENANT_TABLES = (patients, conversations, messages, doctor_instagram)


@pytest.fixture
async def two_doctors_with_patients(
    runtime: Runtime, client: httpx2.AsyncClient
) -> tuple[str, str]:
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("row-level security is PostgreSQL's; on SQLite the doctor filters are the wall")
    doctor_a = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="token-a")
    doctor_b = await add_linked_doctor(runtime, name="Dr B", page_id=PAGE_B, token="token-b")
    entries = [
        payloads.entry(
            page,
            messaging=[
                payloads.message_item(
                    sender="7321554890123456",
                    recipient=page,
                    mid=f"m-{page}",
                    text="hi",
                    timestamp=recent_ms(),
                )
            ],
        )
        for page in (PAGE_A, PAGE_B)
    ]
    await post_delivery(client, payloads.delivery(*entries))
    await runtime.worker.run_until_idle()
    return doctor_a.id, doctor_b.id


async def test_a_transaction_scoped_to_doctor_a_sees_none_of_doctor_bs_rows_without_a_where(
    runtime: Runtime, two_doctors_with_patients: tuple[str, str]
) -> None:
    doctor_a, _doctor_b = two_doctors_with_patients

    async with doctor_transaction(runtime.engine, doctor_a) as connection:
        owners = {
            table.name: set((await connection.execute(select(table.c.doctor_id))).scalars())
            for table in TENANT_TABLES
        }

    assert owners == {table.name: {doctor_a} for table in TENANT_TABLES}


async def test_without_a_tenant_setting_no_patient_data_is_visible(
    runtime: Runtime, two_doctors_with_patients: tuple[str, str]
) -> None:
    async with transaction(runtime.engine) as connection:
        counts = [
            len((await connection.execute(select(table.c.id))).all()) for table in TENANT_TABLES
        ]

    assert counts == [0, 0, 0, 0]


async def test_a_forged_or_empty_tenant_setting_sees_nothing(
    runtime: Runtime, two_doctors_with_patients: tuple[str, str]
) -> None:
    for forged in ("", "' OR 1=1 --", "00000000-0000-0000-0000-000000000000"):
        async with doctor_transaction(runtime.engine, forged) as connection:
            rows = (await connection.execute(select(messages.c.id))).all()
        assert rows == []


async def test_the_system_scope_sees_connections_but_never_patient_data(
    runtime: Runtime, two_doctors_with_patients: tuple[str, str]
) -> None:
    async with system_transaction(runtime.engine) as connection:
        connection_owners = set(
            (await connection.execute(select(doctor_instagram.c.doctor_id))).scalars()
        )
        patient_rows = (await connection.execute(select(patients.c.id))).all()

    assert connection_owners == set(two_doctors_with_patients)
    assert patient_rows == []


async def test_writing_a_row_for_another_doctor_is_refused(
    runtime: Runtime, two_doctors_with_patients: tuple[str, str]
) -> None:
    doctor_a, doctor_b = two_doctors_with_patients
    with pytest.raises(Exception, match="row-level security"):
        async with doctor_transaction(runtime.engine, doctor_a) as connection:
            await connection.execute(
                patients.insert().values(
                    id="intruder",
                    doctor_id=doctor_b,
                    platform="instagram",
                    platform_user_id="1",
                    label="x",
                    created_at=runtime.clock.now(),
                )
            )


async def test_the_application_role_does_not_own_the_tables(
    runtime: Runtime, two_doctors_with_patients: tuple[str, str]
) -> None:
    async with transaction(runtime.engine) as connection:
        role = (await connection.execute(text("SELECT current_user"))).scalar_one()
        owners = set(
            (
                await connection.execute(
                    text("SELECT tableowner FROM pg_tables WHERE tablename = 'messages'")
                )
            ).scalars()
        )

    assert role == "frontdesk_app"
    assert role not in owners
