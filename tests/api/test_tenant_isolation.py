"""Tenants never mix, through the API: doctor A, with B's ids, gets 404 and sees nothing of B.

Doctor B owns a resource of every kind a path can name: a conversation with messages, an API
token, a Facebook page choice, webhook events. Every route under /api/v1 with a path parameter is
enumerated from the app (so a new route is covered, or fails the test until the `tenants` fixture
gives B an id of its kind) and called by A, with an API token and with a signed-in session, using
B's ids: the answer is 404 in the error shape (never 403, which would confirm that the id exists,
never 2xx) and shows nothing of B. Every operator route answers A 403: doctors may not call them
at all. Afterwards B's resources are untouched, and A's listings never show B's ids or data.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
import schemathesis
from fastapi.routing import iter_route_contexts
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.core import NotSet
from sqlalchemy import select

from frontdesk.api.deps import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE
from frontdesk.app import FrontdeskApp, create_app
from frontdesk.db.tables import api_tokens, webhook_events
from frontdesk.runtime import Runtime
from frontdesk.testing import payloads
from frontdesk.testing.fake_graph import FakeGraphApi
from tests.conftest import (
    PASSWORD,
    LinkedDoctor,
    add_linked_doctor,
    bearer,
    give_account,
    post_delivery,
    recent_ms,
    unscoped,
)

PAGE_A = "17841455512340001"
PAGE_B = "17841466698760002"
PATIENT_OF_A = "7321554890123456"
PATIENT_OF_B = "7321554890999999"
SHARED_PATIENT = "7321554890555555"
"""Writes to both clinics: two patients, two conversations, one per doctor."""
CANARY = "canary-only-doctor-b-may-read-this-4c1d"
FB_PAGE_B = "104000000000001"
FB_PAGE_NAMES = ("Downtown clinic of B", "Uptown clinic of B")
API = "/api/v1"
OPERATOR_API = "/api/v1/operator/"
PATH_PARAMETER = re.compile(r"{(\w+)(?::\w+)?}")
CREDENTIALS = ["api_token", "session"]
GENERATED_REQUESTS_PER_ROUTE = 3
LISTINGS = [
    "/api/v1/conversations",
    "/api/v1/tokens",
    "/api/v1/audit",
    "/api/v1/instagram/connection",
    "/api/v1/me",
    "/api/v1/settings/replies",
]


@dataclass(frozen=True)
class Tenants:
    app: FrontdeskApp
    http: httpx2.AsyncClient
    a: LinkedDoctor
    a_token: str
    a_conversation: str
    b: LinkedDoctor
    b_token: str
    b_ids: dict[str, str]
    """B's id of each kind a path parameter can name, by the parameter's name."""
    b_patient_labels: tuple[str, ...]
    b_conversations: tuple[str, ...]
    b_token_ids: tuple[str, ...]

    def b_data(self) -> tuple[str, ...]:
        """What of B must never be in an answer to A, even one that echoes A's request."""
        return (CANARY, *self.b_patient_labels, *FB_PAGE_NAMES, self.b.email, self.b.token)

    def b_identifiers(self) -> tuple[str, ...]:
        """Also never in an answer to A that did not name them."""
        # Event ids are small integers, which any answer may contain by chance; left out.
        ids = [value for name, value in self.b_ids.items() if name != "event_id"]
        return (self.b.id, *self.b_conversations, *self.b_token_ids, *ids)


async def patient_writes(
    http: httpx2.AsyncClient, page: str, sender: str, mid: str, text: str
) -> None:
    item = payloads.message_item(
        sender=sender, recipient=page, mid=mid, text=text, timestamp=recent_ms()
    )
    delivered = await post_delivery(http, payloads.delivery(payloads.entry(page, messaging=[item])))
    assert delivered.status_code == 200, delivered.text


async def conversations_of(http: httpx2.AsyncClient, token: str) -> list[dict[str, Any]]:
    listed = await http.get(f"{API}/conversations", headers=bearer(token))
    assert listed.status_code == 200, listed.text
    conversations: list[dict[str, Any]] = listed.json()["conversations"]
    return conversations


async def start_page_choice(http: httpx2.AsyncClient, fake_graph: FakeGraphApi, token: str) -> str:
    """Facebook Login with two pages: the callback leaves a choice for the doctor to make."""
    fake_graph.add_facebook_page(FB_PAGE_B, FB_PAGE_NAMES[0], "17841400000000777")
    fake_graph.add_facebook_page("104000000000002", FB_PAGE_NAMES[1], "17841400000000888")
    started = await http.post(f"{API}/instagram/connect?login=facebook", headers=bearer(token))
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=fake_graph.app)) as meta:
        authorize = await meta.get(started.json()["authorize_url"])
    back = urlsplit(authorize.headers["location"].removesuffix("#_"))
    answer = await http.get(f"{back.path}?{back.query}", headers=bearer(token))
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith("/instagram/pages/"), location
    return location.rsplit("/", 1)[-1]


@pytest.fixture
async def tenants(runtime: Runtime, fake_graph: FakeGraphApi) -> AsyncIterator[Tenants]:
    app = create_app(runtime, run_worker=False, manage_runtime=False)
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://frontdesk.test"
    ) as http:
        a = await add_linked_doctor(runtime, name="Dr A", page_id=PAGE_A, token="graph-token-a")
        b = await add_linked_doctor(runtime, name="Dr B", page_id=PAGE_B, token="graph-token-b")
        a_token = await give_account(runtime, a)
        b_token = await give_account(runtime, b)
        await patient_writes(http, PAGE_A, PATIENT_OF_A, "mid-a-1", "hello doctor A")
        await patient_writes(http, PAGE_A, SHARED_PATIENT, "mid-a-2", "hello to A as well")
        await patient_writes(http, PAGE_B, PATIENT_OF_B, "mid-b-1", CANARY)
        await patient_writes(http, PAGE_B, SHARED_PATIENT, "mid-b-2", f"{CANARY} again")
        await runtime.worker.run_until_idle()
        spare = await http.post(f"{API}/tokens", json={"name": "b-spare"}, headers=bearer(b_token))
        assert spare.status_code == 201, spare.text
        choice_id = await start_page_choice(http, fake_graph, b_token)
        of_a = await conversations_of(http, a_token)
        of_b = await conversations_of(http, b_token)
        async with unscoped(runtime) as connection:
            b_events = (
                await connection.execute(
                    select(webhook_events.c.id).where(webhook_events.c.doctor_id == b.id)
                )
            ).scalars()
            b_event_ids = [str(event_id) for event_id in b_events]
            b_token_ids = (
                await connection.execute(
                    select(api_tokens.c.id).where(api_tokens.c.doctor_id == b.id)
                )
            ).scalars()
            b_token_id_list = tuple(str(token_id) for token_id in b_token_ids)
        assert len(of_a) == 2
        assert len(of_b) == 2
        assert b_event_ids
        a_labels = {item["patient_label"] for item in of_a}
        yield Tenants(
            app=app,
            http=http,
            a=a,
            a_token=a_token,
            a_conversation=of_a[0]["id"],
            b=b,
            b_token=b_token,
            b_ids={
                "conversation_id": of_b[0]["id"],
                "token_id": spare.json()["id"],
                "choice_id": choice_id,
                "event_id": b_event_ids[0],
            },
            # A label A also uses for its own patient would not be B's data.
            b_patient_labels=tuple(
                item["patient_label"] for item in of_b if item["patient_label"] not in a_labels
            ),
            b_conversations=tuple(item["id"] for item in of_b),
            b_token_ids=b_token_id_list,
        )


async def signed_in_headers(tenants: Tenants) -> dict[str, str]:
    """Doctor A's browser session: the cookie, and the CSRF token for unsafe methods."""
    signed_in = await tenants.http.post(
        f"{API}/auth/sign-in", json={"email": tenants.a.email, "password": PASSWORD}
    )
    assert signed_in.status_code == 200, signed_in.text
    session = signed_in.cookies[SESSION_COOKIE]
    tenants.http.cookies.clear()
    return {"Cookie": f"{SESSION_COOKIE}={session}", CSRF_HEADER: signed_in.json()["csrf_token"]}


async def credentials_of_a(tenants: Tenants, kind: str) -> dict[str, str]:
    if kind == "api_token":
        return bearer(tenants.a_token)
    return await signed_in_headers(tenants)


def api_routes(app: FrontdeskApp) -> Iterator[tuple[str, str]]:
    """(method, path) of every route under /api/v1, in the OpenAPI document or not."""
    for route in iter_route_contexts(app.api.routes):
        path = route.path or ""
        if path.startswith(API):
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    yield method, path


def routes_with_ids(app: FrontdeskApp) -> list[tuple[str, str, list[str]]]:
    found = [
        (method, path, PATH_PARAMETER.findall(path))
        for method, path in api_routes(app)
        if PATH_PARAMETER.search(path)
    ]
    assert found, "no route under /api/v1 takes an id: the enumeration is broken"
    return found


@dataclass(frozen=True)
class Probe:
    """One request of A's: the path filled with B's ids; the rest valid, so that only
    ownership can refuse it."""

    query: dict[str, Any]
    headers: dict[str, str]
    body: Any


NATURAL_BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/conversations/{conversation_id}/messages"): {"text": "A writes here"},
    ("POST", "/api/v1/instagram/facebook-pages/{choice_id}"): {"page_id": FB_PAGE_B},
    ("POST", "/api/v1/operator/events/replay"): {"event_ids": [1, 2, 3]},
}


def probes_for(schema: Any, method: str, path: str, path_parameters: dict[str, str]) -> list[Probe]:
    """The natural request, and a few valid ones schemathesis generates around B's ids."""
    probes = [Probe(query={}, headers={}, body=NATURAL_BODIES.get((method, path)))]
    try:
        operation = schema[path][method]
    except KeyError:  # not in the OpenAPI document: the natural request only
        return probes
    drawn: list[schemathesis.Case[Any]] = []

    @settings(
        max_examples=GENERATED_REQUESTS_PER_ROUTE,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(path_parameters=path_parameters))
    def collect(case: schemathesis.Case[Any]) -> None:
        drawn.append(case)

    collect()
    for case in drawn:
        headers = {
            name: str(value)
            for name, value in (case.headers or {}).items()
            if name.lower() not in {"authorization", "cookie", CSRF_HEADER.lower()}
        }
        body = None if isinstance(case.body, NotSet) else case.body
        probes.append(Probe(query=dict(case.query or {}), headers=headers, body=body))
    return probes


async def call(
    tenants: Tenants,
    method: str,
    url: str,
    credentials: dict[str, str],
    probe: Probe,
) -> httpx2.Response:
    headers = dict(probe.headers)
    headers.update(credentials)
    if method in SAFE_METHODS:
        headers.pop(CSRF_HEADER, None)
    try:
        return await tenants.http.request(
            method,
            url,
            params=probe.query,
            headers=headers,
            json=probe.body,
        )
    finally:
        tenants.http.cookies.clear()


def error_of(response: httpx2.Response) -> tuple[str, str] | None:
    """The error's code and message: what tells one refusal from another."""
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return None


def problems_with(
    tenants: Tenants, response: httpx2.Response, expected_status: int, expected_code: str
) -> list[str]:
    problems = []
    if response.status_code != expected_status:
        problems.append(f"answered {response.status_code}, not {expected_status}")
    try:
        error = response.json()["error"]
        if set(error) != {"code", "message", "correlation_id"}:
            problems.append(f"not the error shape: {response.text[:200]}")
        elif error["code"] != expected_code:
            problems.append(f"error code {error['code']!r}, not {expected_code!r}")
        elif error["correlation_id"] != response.headers.get("x-correlation-id"):
            problems.append("the correlation id differs from the X-Correlation-Id header")
    except (ValueError, KeyError, TypeError):
        problems.append(f"not the error shape: {response.text[:200]}")
    problems += [f"shows B's {leak!r}" for leak in tenants.b_data() if leak in response.text]
    return problems


@pytest.mark.parametrize("credentials", CREDENTIALS)
async def test_b_ids_in_every_path_are_404_to_a_and_show_nothing_of_b(
    tenants: Tenants, fake_graph: FakeGraphApi, credentials: str
) -> None:
    headers_of_a = await credentials_of_a(tenants, credentials)
    routes = routes_with_ids(tenants.app)
    uncovered = {
        f"{method} {path}: {{{name}}}"
        for method, path, names in routes
        for name in names
        if name not in tenants.b_ids
    }
    assert not uncovered, f"give B a resource for these path parameters: {sorted(uncovered)}"
    schema = schemathesis.openapi.from_dict(tenants.app.api.openapi())
    subscriptions_before = set(fake_graph.subscriptions)

    problems: dict[str, list[str]] = {}
    doctor_routes = [route for route in routes if not route[1].startswith(OPERATOR_API)]
    for method, path, names in doctor_routes:  # operator routes: the next test
        ids = {name: tenants.b_ids[name] for name in names}
        url = path.format(**ids)
        probes = probes_for(schema, method, path, ids)
        for probe in probes:
            response = await call(tenants, method, url, headers_of_a, probe)
            found = problems_with(tenants, response, 404, "not_found")
            if found:
                problems.setdefault(f"{method} {url} {probe}", found)
        # B's id must be indistinguishable from an id that names nothing at all.
        nothing = path.format(**{name: str(uuid.uuid4()) for name in names})
        for_b = await call(tenants, method, url, headers_of_a, probes[0])
        for_nothing = await call(tenants, method, nothing, headers_of_a, probes[0])
        if (for_b.status_code, error_of(for_b)) != (for_nothing.status_code, error_of(for_nothing)):
            problems[f"{method} {path}"] = [
                f"B's id answers {for_b.status_code} {for_b.text[:200]}, an unknown id "
                f"{for_nothing.status_code} {for_nothing.text[:200]}"
            ]

    assert len(doctor_routes) >= 5, doctor_routes
    assert not problems, "\n".join(f"{request}: {found}" for request, found in problems.items())
    await assert_b_untouched(tenants, fake_graph, subscriptions_before)


async def assert_b_untouched(
    tenants: Tenants, fake_graph: FakeGraphApi, subscriptions_before: set[str]
) -> None:
    """A's calls changed nothing of B's: token, conversation (read state too), page choice."""
    as_b = bearer(tenants.b_token)
    tokens = {
        token["id"]: token
        for token in (await tenants.http.get(f"{API}/tokens", headers=as_b)).json()
    }
    assert tokens[tenants.b_ids["token_id"]]["revoked_at"] is None
    conversation = next(
        item
        for item in await conversations_of(tenants.http, tenants.b_token)
        if item["id"] == tenants.b_ids["conversation_id"]
    )
    assert conversation["unread_count"] > 0, "A's reads marked B's conversation read"
    choice = await tenants.http.get(
        f"{API}/instagram/facebook-pages/{tenants.b_ids['choice_id']}", headers=as_b
    )
    assert choice.status_code == 200, choice.text
    assert len(choice.json()["pages"]) == 2
    messages = await tenants.http.get(
        f"{API}/conversations/{tenants.b_ids['conversation_id']}/messages", headers=as_b
    )
    assert "A writes here" not in messages.text
    assert set(fake_graph.subscriptions) == subscriptions_before
    connection = (await tenants.http.get(f"{API}/instagram/connection", headers=as_b)).json()
    assert connection["status"] == "active"


async def event_statuses(runtime: Runtime) -> dict[int, tuple[str, int]]:
    async with unscoped(runtime) as connection:
        rows = await connection.execute(
            select(webhook_events.c.id, webhook_events.c.status, webhook_events.c.attempts)
        )
        return {row.id: (row.status, row.attempts) for row in rows}


@pytest.mark.parametrize("credentials", CREDENTIALS)
async def test_a_doctor_gets_403_from_every_operator_route(
    runtime: Runtime, tenants: Tenants, credentials: str
) -> None:
    headers_of_a = await credentials_of_a(tenants, credentials)
    schema = schemathesis.openapi.from_dict(tenants.app.api.openapi())
    operator_routes = [
        (method, path) for method, path in api_routes(tenants.app) if path.startswith(OPERATOR_API)
    ]
    assert len(operator_routes) >= 8, operator_routes
    events_before = await event_statuses(runtime)

    problems: dict[str, list[str]] = {}
    for method, path in operator_routes:
        ids = {name: tenants.b_ids[name] for name in PATH_PARAMETER.findall(path)}
        url = path.format(**ids)
        for probe in probes_for(schema, method, path, ids):
            response = await call(tenants, method, url, headers_of_a, probe)
            found = problems_with(tenants, response, 403, "forbidden")
            if found:
                problems.setdefault(f"{method} {url} {probe}", found)

    assert not problems, "\n".join(f"{request}: {found}" for request, found in problems.items())
    assert await event_statuses(runtime) == events_before, "a doctor's call replayed events"


@pytest.mark.parametrize("credentials", CREDENTIALS)
async def test_a_listings_show_a_own_data_and_nothing_of_b(
    tenants: Tenants, credentials: str
) -> None:
    headers_of_a = await credentials_of_a(tenants, credentials)
    answers = {}
    for path in LISTINGS:
        answers[path] = await tenants.http.get(path, headers=headers_of_a)
        tenants.http.cookies.clear()

    leaks = {
        path: [
            leak for leak in (*tenants.b_data(), *tenants.b_identifiers()) if leak in answer.text
        ]
        for path, answer in answers.items()
    }
    assert {path: answer.status_code for path, answer in answers.items()} == dict.fromkeys(
        LISTINGS, 200
    )
    assert leaks == {path: [] for path in LISTINGS}
    conversations = answers["/api/v1/conversations"].json()["conversations"]
    assert {item["id"] for item in conversations} >= {tenants.a_conversation}
    assert len(conversations) == 2
    assert answers["/api/v1/me"].json()["id"] == tenants.a.id
    assert answers["/api/v1/instagram/connection"].json()["status"] == "active"
