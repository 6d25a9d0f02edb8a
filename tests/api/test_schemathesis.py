"""Property-based checks of the whole API against its own OpenAPI document (schemathesis).

Every operation in /openapi.json is called with generated requests, valid and invalid ones, by
three callers: a doctor (API token), an operator (session cookie and CSRF header, so unsafe methods
pass the CSRF check) and someone without credentials (none, or the garbage schemathesis generates
for the security schemes). Every answer must be: no 5xx, a documented status code, the documented
content type and headers, a body matching the documented schema, and for a 4xx the one error shape
with the response's correlation id. No answer may carry a Graph access token, and none to an
operator may carry message text or a patient's Instagram id. A request that changed something is
sent a second time, as a client's retry would be, and that answer is judged the same way.

Schemathesis's own ASGI transport runs the app on a private event loop in another thread, while
the runtime's database pool belongs to the test's loop (pytest-asyncio, one loop per test). So
schemathesis only generates the cases and judges the answers here; the requests go through httpx2
on the test's own loop.

The OAuth callback is included: with generated query parameters it can never carry a valid state,
so it must answer 4xx (never a 5xx, never the 303 of a completed connection).
"""

from __future__ import annotations

import itertools
import time
import traceback
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx2
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import checks as st_checks
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Ok

from frontdesk.api.deps import SESSION_COOKIE
from frontdesk.app import create_app
from frontdesk.auth.accounts import create_account
from frontdesk.clock import FixedClock
from frontdesk.db.engine import transaction
from frontdesk.runtime import Runtime
from frontdesk.testing import payloads
from frontdesk.testing.fake_graph import FakeGraphApi
from tests.conftest import PASSWORD, add_linked_doctor, bearer, give_account, post_delivery

BASE_URL = "http://frontdesk.test"
PAGE = "17841455512340001"
UNKNOWN_PAGE = "17849999999999999"
PATIENT = "7321554890123456"
GRAPH_TOKEN = "graph-token-of-dr-fuzz"
OPS_EMAIL = "ops@clinic.test"
CALLBACK = "/api/v1/instagram/callback"
SIGN_OUT = "/api/v1/auth/sign-out"
MESSAGE_TEXTS = ("canary-first-message-5d1e", "canary-second-message-pain-9b2c", "canary-lost-0a7f")

Operation = schemathesis.APIOperation[Any, Any, Any, Any]
Case = schemathesis.Case[Any]

DOCTOR, OPERATOR, ANONYMOUS = "doctor", "operator", "anonymous"
CALLERS = (DOCTOR, OPERATOR, ANONYMOUS)
# Generated requests per operation and caller: most for the caller the operation is meant for.
# About 1,200 requests in all: ~15 s on SQLite or PostgreSQL on a 2-core machine.
EXAMPLES_FOR_ITS_CALLER = 25
EXAMPLES_FOR_OTHERS = 6
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
CREDENTIAL_HEADERS = {"authorization", "cookie", "x-csrf-token"}
BORING_HEADERS = {"host", "accept", "accept-encoding", "connection", "user-agent", "content-length"}
CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_headers_conformance,
    st_checks.response_schema_conformance,
]


@dataclass
class Callers:
    """Credentials of each caller; the operator's are renewed after a sign-out."""

    doctor_token: str
    operator_session: str = ""
    operator_csrf: str = ""

    def credentials(self, caller: str) -> tuple[dict[str, str], dict[str, str]]:
        """(headers, cookies) that replace whatever credentials were generated."""
        if caller == DOCTOR:
            return bearer(self.doctor_token), {}
        if caller == OPERATOR:
            return {"X-CSRF-Token": self.operator_csrf}, {SESSION_COOKIE: self.operator_session}
        return {}, {}


@dataclass
class World:
    callers: Callers
    path_ids: dict[str, list[Any]] = field(default_factory=dict)
    """Real ids for path parameters, so that generated requests reach the success paths too."""


def operator_headers(callers: Callers) -> dict[str, str]:
    headers, cookies = callers.credentials(OPERATOR)
    return {**headers, "Cookie": f"{SESSION_COOKIE}={cookies[SESSION_COOKIE]}"}


async def sign_in_operator(http: httpx2.AsyncClient, callers: Callers) -> None:
    signed_in = await http.post(
        "/api/v1/auth/sign-in", json={"email": OPS_EMAIL, "password": PASSWORD}
    )
    assert signed_in.status_code == 200, signed_in.text
    callers.operator_session = signed_in.cookies[SESSION_COOKIE]
    callers.operator_csrf = signed_in.json()["csrf_token"]
    http.cookies.clear()


async def seed(
    runtime: Runtime, http: httpx2.AsyncClient, fake_graph: FakeGraphApi, clock: FixedClock
) -> World:
    """A doctor with a conversation, a spare API token and a Facebook page choice; an operator;
    events of every outcome (processed, dead, failed for an unknown page); audit rows."""
    doctor = await add_linked_doctor(runtime, name="Dr Fuzz", page_id=PAGE, token=GRAPH_TOKEN)
    callers = Callers(doctor_token=await give_account(runtime, doctor))
    async with transaction(runtime.engine) as connection:
        await create_account(
            connection, email=OPS_EMAIL, role="operator", password=PASSWORD, now=clock.now()
        )
    await sign_in_operator(http, callers)
    as_doctor = bearer(callers.doctor_token)

    def dm(page: str, mid: str, text: str) -> object:
        sent_at = int(clock.now().timestamp() * 1000) - 5_000
        item = payloads.message_item(
            sender=PATIENT, recipient=page, mid=mid, text=text, timestamp=sent_at
        )
        return payloads.delivery(payloads.entry(page, messaging=[item]))

    fake_graph.fail_next(4, status=500)  # the reply to the first message never gets through
    await post_delivery(http, dm(PAGE, "mid-first", MESSAGE_TEXTS[0]))
    await runtime.worker.run_until_idle()
    for delay in (60, 300, 900):
        clock.advance(seconds=delay)
        await runtime.worker.run_until_idle()
    await post_delivery(http, dm(PAGE, "mid-second", MESSAGE_TEXTS[1]))
    await post_delivery(http, dm(UNKNOWN_PAGE, "mid-lost", MESSAGE_TEXTS[2]))
    await runtime.worker.run_until_idle()

    conversations = (await http.get("/api/v1/conversations", headers=as_doctor)).json()
    spare = await http.post("/api/v1/tokens", json={"name": "spare"}, headers=as_doctor)
    events = await http.get("/api/v1/operator/events", headers=operator_headers(callers))
    statuses = {event["status"] for event in events.json()}
    assert {"dead", "failed", "processed"} <= statuses, statuses
    fake_graph.add_facebook_page("104000000000001", "Downtown", "17841400000000777")
    fake_graph.add_facebook_page("104000000000002", "Uptown", "17841400000000888")
    started = await http.post("/api/v1/instagram/connect?login=facebook", headers=as_doctor)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=fake_graph.app)) as meta:
        authorize = await meta.get(started.json()["authorize_url"])
    back = urlsplit(authorize.headers["location"].removesuffix("#_"))
    chosen = await http.get(f"{back.path}?{back.query}", headers=as_doctor)
    assert chosen.status_code == 303, chosen.text
    return World(
        callers=callers,
        path_ids={
            "conversation_id": [item["id"] for item in conversations["conversations"]],
            "token_id": [spare.json()["id"]],
            "event_id": [event["id"] for event in events.json()],
            "choice_id": [chosen.headers["location"].rsplit("/", 1)[-1]],
        },
    )


def operations_of(schema: schemathesis.BaseSchema) -> list[Operation]:
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), "the OpenAPI document has invalid operations"
    return operations


def meant_for(operation: Operation) -> str:
    if operation.path.startswith("/api/v1/operator/"):
        return OPERATOR
    if operation.definition.raw.get("security"):
        return DOCTOR
    return ANONYMOUS


def strategy_for(
    operation: Operation, world: World, *, negative: bool = True
) -> st.SearchStrategy[Any]:
    """Valid requests (some with real path ids) and, unless told not to, invalid ones."""
    strategies = [operation.as_strategy()]
    if negative:
        strategies.append(
            operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE)
        )
    names = [parameter.name for parameter in operation.path_parameters]
    if names and all(world.path_ids.get(name) for name in names):
        real_ids = st.fixed_dictionaries(
            {name: st.sampled_from(world.path_ids[name]) for name in names}
        )
        strategies.append(real_ids.flatmap(lambda ids: operation.as_strategy(path_parameters=ids)))
    return st.one_of(*strategies)


def draw_cases(
    strategy: st.SearchStrategy[Any], count: int, *, derandomize: bool = False
) -> list[Case]:
    drawn: list[Case] = []

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=derandomize,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(case: Case) -> None:
        drawn.append(case)

    collect()
    return drawn


async def send(
    http: httpx2.AsyncClient, case: Case, caller: str, callers: Callers
) -> httpx2.Response:
    """The case as schemathesis would send it, with the caller's credentials in place of the
    generated ones (an anonymous caller keeps the generated garbage, if any)."""
    kwargs = case.as_transport_kwargs(base_url=BASE_URL)
    headers = dict(kwargs.get("headers") or {})
    cookies = dict(kwargs.get("cookies") or {})
    if caller != ANONYMOUS:
        headers = {
            name: value
            for name, value in headers.items()
            if name.lower() not in {"authorization", "x-csrf-token"}
        }
        cookies.pop(SESSION_COOKIE, None)
        extra_headers, extra_cookies = callers.credentials(caller)
        headers.update(extra_headers)
        cookies.update(extra_cookies)
    # requests encodes the query, the cookies and the body exactly as schemathesis means them.
    prepared = requests.Request(
        method=kwargs["method"],
        url=kwargs["url"],
        headers=headers,
        params=kwargs.get("params"),
        cookies=cookies,
        json=kwargs.get("json"),
        data=kwargs.get("data"),
        files=kwargs.get("files"),
    ).prepare()
    body = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
    assert body is None or isinstance(body, bytes), type(body)
    wire_headers = {
        name: value if isinstance(value, str) else value.decode("latin-1")
        for name, value in prepared.headers.items()
    }
    try:
        return await http.request(
            prepared.method or "GET", prepared.url or "", headers=wire_headers, content=body
        )
    finally:
        http.cookies.clear()


def frontdesk_problems(operation: Operation, caller: str, response: httpx2.Response) -> list[str]:
    """What the OpenAPI document cannot say: the error shape, and what must never be shown."""
    problems = []
    if 400 <= response.status_code < 500:
        try:
            error = response.json()["error"]
            assert set(error) == {"code", "message", "correlation_id"}
            assert error["correlation_id"] == response.headers["x-correlation-id"]
        except (ValueError, KeyError, TypeError, AssertionError):
            problems.append(f"not the error shape: {response.status_code} {response.text[:300]}")
    if GRAPH_TOKEN in response.text or "EAApage-" in response.text:
        problems.append("a Graph access token in the answer")
    if caller == OPERATOR and any(secret in response.text for secret in (*MESSAGE_TEXTS, PATIENT)):
        problems.append("message text or a patient's Instagram id shown to an operator")
    if operation.path == CALLBACK and not 400 <= response.status_code < 500:
        problems.append(f"the callback without a valid state answered {response.status_code}")
    return problems


def judge(
    operation: Operation,
    case: Case,
    caller: str,
    response: httpx2.Response,
) -> list[tuple[str, str]]:
    """(title, message) of every problem with one answer."""
    found = []
    try:
        case.validate_response(response, checks=CHECKS)
    except (FailureGroup, Failure) as error:
        group = error.exceptions if isinstance(error, FailureGroup) else (error,)
        found += [(failure.title, failure.message) for failure in group]
    found += [(problem, "") for problem in frontdesk_problems(operation, caller, response)]
    return found


def describe(request: httpx2.Request) -> str:
    """The request, for the report; credentials left out."""
    headers = {
        name: "…" if name.lower() in CREDENTIAL_HEADERS else value
        for name, value in request.headers.items()
        if name.lower() not in BORING_HEADERS
    }
    body = request.content.decode("utf-8", "backslashreplace")[:500]
    return f"{request.method} {request.url}\nheaders: {headers}\nbody: {body!r}"


async def test_every_operation_answers_as_documented(
    runtime: Runtime, fake_graph: FakeGraphApi, clock: FixedClock
) -> None:
    started = time.monotonic()
    app = create_app(runtime, run_worker=False, manage_runtime=False)
    problems: dict[tuple[str, str, str], str] = {}
    calls = 0
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url=BASE_URL
    ) as http:
        world = await seed(runtime, http, fake_graph, clock)
        schema = schemathesis.openapi.from_dict(app.api.openapi())
        operations = operations_of(schema)
        assert len(operations) >= 30, [operation.label for operation in operations]
        for operation, caller in itertools.product(operations, CALLERS):
            count = (
                EXAMPLES_FOR_ITS_CALLER if caller == meant_for(operation) else EXAMPLES_FOR_OTHERS
            )
            for case in draw_cases(strategy_for(operation, world), count):
                # A request that changed something is sent again, as a client's retry would be.
                for attempt in ("", " (when sent again)"):
                    calls += 1
                    try:
                        response = await send(http, case, caller, world.callers)
                    except Exception as error:
                        title = f"raised {type(error).__name__}{attempt}"
                        trace = "".join(traceback.format_exception(error))
                        detail = f"{case.as_curl_command()}\n{trace}"
                        problems.setdefault((operation.label, caller, title), detail)
                        break
                    for title, message in judge(operation, case, caller, response):
                        detail = f"{message}\n{describe(response.request)}"
                        problems.setdefault((operation.label, caller, title + attempt), detail)
                    if attempt or case.method.upper() in SAFE_METHODS or not response.is_success:
                        break
                if operation.path == SIGN_OUT and caller == OPERATOR:
                    await sign_in_operator(http, world.callers)
    elapsed = time.monotonic() - started
    report = "\n\n".join(
        f"{label} as {caller}: {title}\n{detail}"
        for (label, caller, title), detail in problems.items()
    )
    assert not problems, f"{len(problems)} problems in {calls} calls ({elapsed:.0f} s):\n\n{report}"


async def test_a_retried_manual_reply_answers_as_documented(
    runtime: Runtime, fake_graph: FakeGraphApi, clock: FixedClock
) -> None:
    """What the fuzzing above finds when it repeats an Idempotency-Key, every time."""
    app = create_app(runtime, run_worker=False, manage_runtime=False)
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url=BASE_URL
    ) as http:
        world = await seed(runtime, http, fake_graph, clock)
        schema = schemathesis.openapi.from_dict(app.api.openapi())
        operation = schema["/api/v1/conversations/{conversation_id}/messages"]["POST"]
        case = operation.Case(
            path_parameters={"conversation_id": world.path_ids["conversation_id"][0]},
            headers={"Idempotency-Key": "retry-of-one-reply"},
            body={"text": "On my way"},
        )
        first = await send(http, case, DOCTOR, world.callers)
        again = await send(http, case, DOCTOR, world.callers)

    assert first.status_code == 202, first.text
    assert again.json()["message_ids"] == first.json()["message_ids"]
    assert judge(operation, case, DOCTOR, first) == []
    assert judge(operation, case, DOCTOR, again) == []


def with_nul(value: Any) -> Any:
    """Every string in `value` with a NUL character (U+0000) in it."""
    if isinstance(value, str):
        return f"{value[:1]}\x00{value[1:]}"
    if isinstance(value, dict):
        return {key: with_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [with_nul(item) for item in value]
    return value


def free_text_with_nul(operation: Operation) -> dict[str, str]:
    """Every query parameter that takes any string (no enum, format or pattern), with a NUL in
    it: all of them at once, so that none is refused before the others reach the database."""
    found = {}
    for parameter in operation.query:
        schema = parameter.definition.get("schema", {})
        for option in schema.get("anyOf", [schema]):
            if option.get("type") == "string" and not {"enum", "format", "pattern"} & set(option):
                found[parameter.name] = "a\x00b"
    return found


async def test_a_nul_character_in_any_string_is_answered_as_documented(
    runtime: Runtime, fake_graph: FakeGraphApi, clock: FixedClock
) -> None:
    """SQLite stores U+0000 in text and PostgreSQL refuses it; either way a caller who sends one
    (in a path, a query parameter or a JSON body) gets a documented answer, never a 5xx. The
    fuzzing above finds this only now and then; here every operation gets such strings."""
    app = create_app(runtime, run_worker=False, manage_runtime=False)
    problems: dict[tuple[str, str], str] = {}
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app, raise_app_exceptions=False), base_url=BASE_URL
    ) as http:
        world = await seed(runtime, http, fake_graph, clock)
        schema = schemathesis.openapi.from_dict(app.api.openapi())
        for operation in operations_of(schema):
            caller = meant_for(operation)
            strategy = strategy_for(operation, world, negative=False)
            for drawn in draw_cases(strategy, 3, derandomize=True):
                case = operation.Case(
                    path_parameters=with_nul(drawn.path_parameters),
                    headers=drawn.headers,
                    query={**(drawn.query or {}), **free_text_with_nul(operation)},
                    body=with_nul(drawn.body),
                    media_type=drawn.media_type,
                )
                response = await send(http, case, caller, world.callers)
                for title, message in judge(operation, case, caller, response):
                    detail = f"{message}\n{describe(response.request)}"
                    problems.setdefault((operation.label, title), detail)
    report = "\n\n".join(
        f"{label}: {title}\n{detail}" for (label, title), detail in problems.items()
    )
    assert not problems, f"{len(problems)} problems:\n\n{report}"
