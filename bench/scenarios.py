"""The scenarios: intake side by side with baselines, latency at a fixed rate, end to end,
drain, tenants and memory. Each returns rows of figures (median of the runs, with spread).

Every scenario checks that it measured something: a run in which no request succeeded, in
which a request was refused (4xx), whose events did not reach the database, or in which no
event was processed raises BenchError, and the row is reported as failed, never as a figure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url

from bench.databases import Databases, database_name, postgres_available
from bench.instance import FINAL_STATUSES, Instance
from bench.procs import (
    LOOPBACK,
    BenchError,
    CpuMeter,
    Process,
    ProcessGroup,
    free_port,
    http_get,
    python,
    wait_until_ready,
)
from bench.stats import figure, percentile
from bench.workload import (
    BATCH_EVENTS,
    PatientIds,
    Pool,
    Request,
    batches,
    single_messages,
    write_pool,
)
from bench.wrkload import run_python_loadgen, run_wrk, wrk_path
from frontdesk.db.engine import sync_url

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK = "/webhooks/instagram"
SEED_DOCTORS = 10
Row = dict[str, Any]


@dataclass(frozen=True)
class Config:
    """How big and how long; `quick()` is the small version the tests run."""

    quick: bool = False
    runs: int = 3
    concurrency: int = 32
    wrk_threads: int = 1
    intake_duration: float = 4.0
    intake_warmup: float = 1.0
    latency_rate: float = 1000.0
    latency_duration: float = 5.0
    latency_warmup: float = 1.0
    latency_modes: tuple[str, ...] = ("serve", "api")
    e2e_low_rate: float = 5.0
    e2e_duration: float = 8.0
    e2e_burst: int = 300
    e2e_reply_wait: float = 40.0
    drain_events: int = 50_000
    drain_window: float = 15.0
    drain_workers: tuple[int, ...] = (1, 2, 4)
    drain_enough: int = 0  # stop a drain run once this many events finished (0: use the window)
    worker_concurrency: int = 4
    tenant_doctors: tuple[int, int] = (10, 100_000)
    tenant_events: int = 2_000
    tenant_window: float = 12.0
    memory_window: float = 60.0
    loadgen: str = "auto"  # auto (wrk when installed) | wrk | python
    databases: tuple[str, ...] = ("sqlite", "postgresql")
    wrong_secret: bool = False  # self-check: Frontdesk gets another app secret, every POST 401

    @classmethod
    def quick_config(cls, **overrides: Any) -> Config:
        values: dict[str, Any] = {
            "quick": True,
            "runs": 1,
            "intake_duration": 0.3,
            "intake_warmup": 0.0,
            "latency_rate": 200.0,
            "latency_duration": 1.0,
            "latency_warmup": 0.0,
            "e2e_low_rate": 5.0,
            "e2e_duration": 1.0,
            "e2e_burst": 10,
            "e2e_reply_wait": 15.0,
            "drain_events": 500,
            "drain_window": 4.0,
            "drain_workers": (2,),
            "latency_modes": ("serve",),
            "drain_enough": 25,
            "tenant_doctors": (10, 1_000),
            "tenant_events": 500,
            "tenant_window": 4.0,
            "memory_window": 3.0,
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class Bench:
    """What every scenario shares: config, run directory, databases, fresh patient ids."""

    config: Config
    run_dir: Path
    databases: Databases = field(init=False)
    patients: PatientIds = field(default_factory=PatientIds)
    _pools: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    postgres_problem: str | None = field(init=False, default=None)
    queues: dict[tuple[str, int, int], Queue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.databases = Databases(self.run_dir / "db")
        (self.run_dir / "db").mkdir(exist_ok=True)
        if "postgresql" in self.config.databases:
            self.postgres_problem = postgres_available()

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    def group(self) -> ProcessGroup:
        return ProcessGroup(self.log_dir)

    def database_kinds(self) -> list[str]:
        kinds = [kind for kind in self.config.databases if kind == "sqlite"]
        if "postgresql" in self.config.databases and self.postgres_problem is None:
            kinds.append("postgresql")
        return kinds

    def new_database(self, kind: str, name: str) -> str:
        return self.databases.sqlite(name) if kind == "sqlite" else self.databases.postgres()

    def pool(self, name: str, requests: Iterator[Request], secret: str) -> Pool:
        return write_pool(
            self.run_dir / "pools" / f"{name}-{next(self._pools)}.txt", requests, secret
        )

    def singles(self, count: int, secret: str, *, doctors: int = SEED_DOCTORS) -> Pool:
        return self.pool(
            "single", single_messages(count, doctors=doctors, patients=self.patients), secret
        )

    def batches(self, count: int, secret: str, *, doctors: int = SEED_DOCTORS) -> Pool:
        return self.pool("batch", batches(count, doctors=doctors, patients=self.patients), secret)

    def use_wrk(self) -> bool:
        if self.config.loadgen == "python":
            return False
        if self.config.loadgen == "wrk" and wrk_path() is None:
            raise BenchError("--loadgen wrk, but wrk is not installed (apt-get install -y wrk)")
        return wrk_path() is not None

    def load(
        self,
        url: str,
        pool: Pool,
        *,
        duration: float,
        concurrency: int | None = None,
        rate: float | None = None,
        warmup: float = 0.0,
        record: bool = False,
        count: int = 0,
        grace: float = 15.0,
    ) -> dict[str, Any]:
        """One load run from a separate process: wrk for closed loops when available (and
        nothing per request is needed), else the Python generator."""
        # wrk counts whole seconds; shorter runs (quick mode) go to the Python generator.
        if not rate and not record and not count and duration >= 1 and self.use_wrk():
            if warmup:
                run_wrk(url, pool.path, duration=warmup, concurrency=concurrency or 32)
            return run_wrk(
                url,
                pool.path,
                duration=duration,
                concurrency=concurrency or self.config.concurrency,
                threads=self.config.wrk_threads,
            )
        return run_python_loadgen(
            url,
            pool.path,
            duration=duration,
            concurrency=concurrency,
            rate=rate,
            warmup=warmup,
            record=record,
            count=count,
            grace=grace,
            out_dir=self.run_dir / "loadgen",
        )

    def instance(self, kind: str, name: str, *, graph_url: str | None = None) -> Instance:
        """A migrated database with SEED_DOCTORS connected doctors."""
        url = self.new_database(kind, name)
        instance = Instance(database_url=url, home=self.run_dir / "home" / name)
        if graph_url:
            instance.graph_url = graph_url
        instance.extra_env["FRONTDESK_WORKER_CONCURRENCY"] = str(self.config.worker_concurrency)
        instance.migrate()
        instance.seed_doctors(SEED_DOCTORS)
        return instance

    def frontdesk_secret(self, instance: Instance) -> str | None:
        """The secret Frontdesk is started with: its own, or a wrong one for the self-check."""
        return "not-the-secret-the-load-is-signed-with" if self.config.wrong_secret else None

    def fake_graph(self, group: ProcessGroup) -> str:
        port = free_port()
        process = group.start(
            "fakegraph", [python(), "-m", "bench.fakegraph", "--port", str(port)], cwd=ROOT
        )
        base = f"http://{LOOPBACK}:{port}"
        wait_until_ready(process, f"{base}/_bench/healthz", timeout=30)
        return base

    def close(self) -> None:
        self.databases.close()


# --- checks ---------------------------------------------------------------------------------


def client_errors(result: dict[str, Any]) -> int:
    statuses = result.get("statuses") or {}
    return sum(
        count for status, count in statuses.items() if status.isdigit() and 400 <= int(status) < 500
    )


def non_2xx(result: dict[str, Any]) -> int:
    return int(result["requests"]) - int(result["ok"])


MAX_FAILED_FRACTION = 0.01


def require_delivered(result: dict[str, Any], what: str, *, strict: bool) -> None:
    """A run counts only if requests succeeded and none was refused (4xx: a misconfigured
    target). `strict` (closed-loop runs) also refuses more than 1 % of 5xx answers and
    connection errors: such a run measured a failing server, not a throughput."""
    statuses = result.get("statuses") or {}
    if int(result.get("ok") or 0) == 0:
        raise BenchError(
            f"{what}: no request succeeded ({result['requests']} answered, statuses {statuses}, "
            f"{result['errors']} connection errors)"
        )
    if client_errors(result):
        raise BenchError(f"{what}: {client_errors(result)} requests refused, statuses {statuses}")
    failed = non_2xx(result) + int(result.get("errors") or 0)
    if strict and failed > MAX_FAILED_FRACTION * max(int(result["requests"]), 1):
        raise BenchError(
            f"{what}: {non_2xx(result)} non-2xx answers and {result['errors']} connection "
            f"errors out of {result['requests']} (statuses {statuses})"
        )


def stored_events(instance: Instance) -> int:
    return sum(instance.event_counts().values())


# --- intake ----------------------------------------------------------------------------------

BASELINE_SECRET = "bench-baseline-secret"  # noqa: S105 - signs loopback test traffic
BASELINES = {
    "bare": "(a) bare ASGI: read body, 200",
    "verify": "(b) ASGI: read, verify, parse",
    "fastapi_commit": "(c) FastAPI: verify, parse, commit",
}


def _intake_runs(
    bench: Bench,
    url: str,
    make_pool: Callable[[int], Pool],
    label: str,
    *,
    instance: Instance | None,
    server: Process,
) -> list[Row]:
    config = bench.config
    if config.intake_warmup:
        warm = bench.load(url, make_pool(0), duration=config.intake_warmup)
        require_delivered(warm, f"{label} warm-up", strict=True)
        expected_rate = warm["ok"] / max(warm["duration_s"], 1e-6)
    else:
        expected_rate = 0.0
    runs = []
    for number in range(config.runs):
        # Frontdesk stores every delivery: give it unique bodies (a wrapped pool would replay).
        # The warm-up may have been slow (cold connections), hence the floors in make_pool.
        pool = make_pool(int(expected_rate * config.intake_duration * 2.5) + 4 * config.concurrency)
        before = stored_events(instance) if instance else 0
        meter = CpuMeter([server]).start()
        result = bench.load(url, pool, duration=config.intake_duration)
        cpu = meter.stop()
        require_delivered(result, f"{label} run {number + 1}", strict=True)
        events = result["ok"] * pool.events_per_request
        run: Row = {
            "deliveries_per_s": result["ok"] / result["duration_s"],
            "events_per_s": events / result["duration_s"],
            "p50_ms": result["latency_ms"].get("p50"),
            "p99_ms": result["latency_ms"].get("p99"),
            "requests": result["requests"],
            "ok": result["ok"],
            "failed_requests": non_2xx(result) + result["errors"],
            "server_cpu_pct": cpu["process_cpu_pct"],
            "machine_cpu_pct": cpu["machine_cpu_pct"],
            "tool": result["tool"],
            "pool_wrapped": result["pool_wrapped"],
        }
        if instance is not None:
            if result["pool_wrapped"]:
                raise BenchError(f"{label} run {number + 1}: the pool was too small (harness)")
            time.sleep(0.2)
            stored = stored_events(instance) - before
            run["stored_events"] = stored
            if stored < events * 0.99:
                raise BenchError(
                    f"{label} run {number + 1}: {result['ok']} deliveries answered 200 but only "
                    f"{stored} of {events} events are in the database"
                )
        runs.append(run)
        expected_rate = max(expected_rate, result["ok"] / result["duration_s"])
    return runs


def _intake_row(target: str, database: str, payload: str, runs: list[Row]) -> Row:
    return {
        "target": target,
        "database": database,
        "payload": payload,
        "status": "ok",
        "deliveries_per_s": figure([run["deliveries_per_s"] for run in runs]),
        "events_per_s": figure([run["events_per_s"] for run in runs]),
        "p50_ms": figure([run["p50_ms"] for run in runs]),
        "p99_ms": figure([run["p99_ms"] for run in runs]),
        "server_cpu_pct": figure([run["server_cpu_pct"] for run in runs]),
        "runs": runs,
    }


def _pool_maker(bench: Bench, payload: str, secret: str, *, unique: bool) -> Callable[[int], Pool]:
    """Pools for one target: unique per call (Frontdesk), or one shared pool (baselines)."""
    shared: dict[str, Pool] = {}

    def make(size: int) -> Pool:
        if payload == "single":
            size = max(size, 3_000) if unique else 5_000
            if not unique:
                shared.setdefault("pool", bench.singles(size, secret))
                return shared["pool"]
            return bench.singles(size, secret)
        size = max(size, 600) if unique else 500
        if not unique:
            shared.setdefault("pool", bench.batches(size, secret))
            return shared["pool"]
        return bench.batches(size, secret)

    return make


def intake(bench: Bench) -> dict[str, Any]:
    """Signed deliveries at fixed concurrency: Frontdesk (`frontdesk api`) and the baselines."""
    rows: list[Row] = []
    kinds = bench.database_kinds()
    targets: list[tuple[str, str]] = [("bare", "-"), ("verify", "-")]
    for kind in kinds:
        targets += [("frontdesk", kind), ("fastapi_commit", kind)]
    for target, kind in targets:
        label = f"{target}/{kind}"
        try:
            rows.extend(_intake_target(bench, target, kind, label))
        except BenchError as error:
            rows.append(
                {
                    "target": target,
                    "database": kind,
                    "payload": "*",
                    "status": "failed",
                    "error": str(error),
                }
            )
    return {"rows": rows, "ratios": intake_ratios(rows), "skipped": _skipped(bench)}


def _intake_target(bench: Bench, target: str, kind: str, label: str) -> list[Row]:
    rows = []
    with bench.group() as group:
        instance: Instance | None = None
        if target == "frontdesk":
            instance = bench.instance(kind, f"intake-{kind}")
            secret = instance.app_secret
            process, base = instance.start_server(
                group, mode="api", app_secret=bench.frontdesk_secret(instance)
            )
        else:
            secret = BASELINE_SECRET
            port = free_port()
            argv = [
                python(),
                "-m",
                "bench.baselines",
                "--app",
                target,
                "--port",
                str(port),
                "--app-secret",
                secret,
            ]
            if target == "fastapi_commit":
                argv += ["--database-url", bench.new_database(kind, f"baseline-{kind}")]
            process = group.start(f"baseline-{target}", argv, cwd=ROOT)
            base = f"http://{LOOPBACK}:{port}"
            wait_until_ready(
                process, base + ("/healthz" if target == "fastapi_commit" else "/"), timeout=60
            )
        for payload in ("single", "batch"):
            make = _pool_maker(bench, payload, secret, unique=instance is not None)
            try:
                runs = _intake_runs(
                    bench,
                    base + WEBHOOK,
                    make,
                    f"{label}/{payload}",
                    instance=instance,
                    server=process,
                )
            except BenchError as error:
                rows.append(
                    {
                        "target": target,
                        "database": kind,
                        "payload": payload,
                        "status": "failed",
                        "error": str(error),
                    }
                )
                continue
            rows.append(_intake_row(target, kind, payload, runs))
    return rows


def intake_ratios(rows: list[Row]) -> list[Row]:
    """Frontdesk's deliveries/s over each baseline's, per database and payload."""

    def find(target: str, database: str, payload: str) -> Row | None:
        return next(
            (
                row
                for row in rows
                if row["target"] == target
                and row["database"] in (database, "-")
                and row["payload"] == payload
                and row["status"] == "ok"
            ),
            None,
        )

    ratios = []
    for row in rows:
        if row["target"] != "frontdesk" or row["status"] != "ok":
            continue
        entry: Row = {"database": row["database"], "payload": row["payload"]}
        mine = row["deliveries_per_s"]["median"]
        for baseline in BASELINES:
            other = find(baseline, row["database"], row["payload"])
            entry[baseline] = mine / other["deliveries_per_s"]["median"] if other else None
        ratios.append(entry)
    return ratios


def _skipped(bench: Bench) -> list[str]:
    if "postgresql" in bench.config.databases and bench.postgres_problem:
        return [f"postgresql: {bench.postgres_problem}"]
    return []


# --- latency at a fixed rate ---------------------------------------------------------------


def latency(bench: Bench) -> dict[str, Any]:
    """Open-loop load at `latency_rate` deliveries/s on SQLite: `frontdesk serve` (the
    embedded worker draining alongside, as a user runs it) and `frontdesk api` alone."""
    config = bench.config
    rows = []
    for mode in config.latency_modes:
        try:
            rows.append(_latency_mode(bench, mode))
        except BenchError as error:
            rows.append(
                {
                    "server": f"frontdesk {mode}",
                    "database": "sqlite",
                    "status": "failed",
                    "error": str(error),
                }
            )
    return {"rows": rows, "rate": config.latency_rate}


def _latency_mode(bench: Bench, mode: str) -> Row:
    config = bench.config
    with bench.group() as group:
        graph = bench.fake_graph(group)
        instance = bench.instance("sqlite", f"latency-{mode}", graph_url=graph)
        _, base = instance.start_server(
            group, mode=mode, app_secret=bench.frontdesk_secret(instance)
        )
        runs = []
        for number in range(config.runs):
            size = int(config.latency_rate * (config.latency_duration + config.latency_warmup)) + 50
            pool = bench.singles(size, instance.app_secret)
            result = bench.load(
                base + WEBHOOK,
                pool,
                duration=config.latency_duration,
                rate=config.latency_rate,
                warmup=config.latency_warmup,
                # An overloaded server would keep answering the backlog for many seconds;
                # what is still unanswered 5 s after the last request was due counts as failed.
                grace=5.0,
            )
            require_delivered(result, f"latency/{mode} run {number + 1}", strict=False)
            runs.append(
                {
                    "achieved_per_s": result["ok"] / result["duration_s"],
                    "p50_ms": result["latency_ms"].get("p50"),
                    "p95_ms": result["latency_ms"].get("p95"),
                    "p99_ms": result["latency_ms"].get("p99"),
                    "max_ms": result["latency_ms"].get("max"),
                    "requests": result["requests"],
                    "ok": result["ok"],
                    "failed_requests": non_2xx(result) + result["errors"] + result["unanswered"],
                    "statuses": result["statuses"],
                }
            )
    return {
        "server": f"frontdesk {mode}",
        "database": "sqlite",
        "status": "ok",
        "rate": config.latency_rate,
        "achieved_per_s": figure([run["achieved_per_s"] for run in runs]),
        "p50_ms": figure([run["p50_ms"] for run in runs]),
        "p95_ms": figure([run["p95_ms"] for run in runs]),
        "p99_ms": figure([run["p99_ms"] for run in runs]),
        "failed_requests": figure([run["failed_requests"] for run in runs]),
        "runs": runs,
    }


# --- end to end ------------------------------------------------------------------------------


def _arrivals(graph: str) -> dict[str, float]:
    status, body = http_get(f"{graph}/_bench/sends", timeout=10)
    if status != 200:
        raise BenchError(f"the fake Graph API answered {status}")
    first: dict[str, float] = {}
    for recipient, at in json.loads(body)["sends"]:
        first.setdefault(recipient, at)
    return first


def _wait_for_replies(graph: str, keys: set[str], bound: float) -> dict[str, float]:
    deadline = time.monotonic() + bound
    while True:
        arrivals = _arrivals(graph)
        if keys.issubset(arrivals) or time.monotonic() > deadline:
            return arrivals
        time.sleep(0.2)


def end_to_end(bench: Bench) -> dict[str, Any]:
    """POST → reply received by the fake Graph API, on SQLite with `frontdesk serve`."""
    config = bench.config
    with bench.group() as group:
        graph = bench.fake_graph(group)
        instance = bench.instance("sqlite", "e2e", graph_url=graph)
        _, base = instance.start_server(
            group, mode="serve", app_secret=bench.frontdesk_secret(instance)
        )
        url = base + WEBHOOK
        # The maximum: a burst, and how fast its replies come back.
        burst = bench.singles(config.e2e_burst, instance.app_secret)
        result = bench.load(
            url, burst, duration=60.0, concurrency=8, record=True, count=config.e2e_burst
        )
        # Not strict: a 503 during the burst is Frontdesk's answer under load (Meta would
        # deliver again); it is counted in the row, and only answered messages are timed.
        require_delivered(result, "e2e burst", strict=False)
        sent = {key: at for key, at, status in result["sent"] if 200 <= status < 300}
        arrivals = _wait_for_replies(graph, set(sent), config.e2e_reply_wait + config.e2e_burst / 5)
        replied = [arrivals[key] for key in sent if key in arrivals]
        if not replied:
            raise BenchError("e2e burst: no reply reached the fake Graph API")
        span = max(replied) - min(sent.values())
        maximum = len(replied) / span if span > 0 else math.nan
        rows = [
            {
                "load": "maximum (burst)",
                "status": "ok",
                "rate": None,
                "replies_per_s": figure([maximum]),
                "replied": len(replied),
                "sent": len(sent),
                "failed_requests": non_2xx(result) + result["errors"] + result["unanswered"],
                "statuses": result["statuses"],
            }
        ]
        for label, rate in (("low", config.e2e_low_rate), ("half of maximum", maximum / 2)):
            rows.append(_e2e_rate(bench, url, graph, instance, label, max(rate, 1.0)))
    return {"rows": rows, "maximum_replies_per_s": maximum}


def _e2e_rate(
    bench: Bench, url: str, graph: str, instance: Instance, label: str, rate: float
) -> Row:
    config = bench.config
    runs = []
    for number in range(config.runs):
        count = max(3, int(rate * config.e2e_duration))
        pool = bench.singles(count, instance.app_secret)
        result = bench.load(url, pool, duration=config.e2e_duration, rate=rate, record=True)
        require_delivered(result, f"e2e/{label} run {number + 1}", strict=False)
        sent = {key: at for key, at, status in result["sent"] if 200 <= status < 300}
        bound = config.e2e_reply_wait + len(sent) / max(rate, 1.0)
        arrivals = _wait_for_replies(graph, set(sent), bound)
        latencies = [(arrivals[key] - at) * 1000 for key, at in sent.items() if key in arrivals]
        if not latencies:
            raise BenchError(f"e2e/{label} run {number + 1}: no reply reached the fake Graph API")
        runs.append(
            {
                "rate": rate,
                "failed_requests": non_2xx(result) + result["errors"] + result["unanswered"],
                "sent": len(sent),
                "replied": len(latencies),
                "missing": len(sent) - len(latencies),
                "p50_ms": percentile(latencies, 0.50),
                "p95_ms": percentile(latencies, 0.95),
                "p99_ms": percentile(latencies, 0.99),
            }
        )
    return {
        "load": label,
        "status": "ok",
        "rate": rate,
        "p50_ms": figure([run["p50_ms"] for run in runs]),
        "p95_ms": figure([run["p95_ms"] for run in runs]),
        "p99_ms": figure([run["p99_ms"] for run in runs]),
        "missing": sum(run["missing"] for run in runs),
        "failed_requests": sum(run["failed_requests"] for run in runs),
        "runs": runs,
    }


# --- queued events: drain, memory, tenants ----------------------------------------------------


@dataclass
class Queue:
    """A database holding `events` queued events, kept as a template to copy for each run."""

    instance: Instance
    events: int

    def copy(self, bench: Bench) -> Instance:
        source = self.instance.database_url
        if self.instance.is_postgres:
            url = bench.databases.postgres(template=database_name(source))
        else:
            url = bench.databases.sqlite("drain-copy")
            _checkpoint(source)
            shutil.copyfile(make_url(source).database or "", make_url(url).database or "")
        return dataclasses.replace(
            self.instance, database_url=url, extra_env=dict(self.instance.extra_env)
        )

    def discard(self, bench: Bench, copy: Instance) -> None:
        if copy.is_postgres:
            bench.databases.drop(copy.database_url)
        else:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{make_url(copy.database_url).database}{suffix}").unlink()


def _checkpoint(sqlite_url: str) -> None:
    connection = sqlite3.connect(make_url(sqlite_url).database or "")
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


def queue_events(
    bench: Bench, kind: str, name: str, events: int, *, doctors: int = SEED_DOCTORS
) -> Queue:
    """Migrate, connect `doctors` doctors, and post `events` events (50-event batches) through
    `frontdesk api`; the events stay queued (no worker runs). Kept for the rest of the run:
    scenarios asking for the same queue get the same template."""
    cached = bench.queues.get((kind, events, doctors))
    if cached is not None:
        return cached
    instance = bench.instance(kind, name)
    if doctors > SEED_DOCTORS:
        instance.seed_doctors(doctors - SEED_DOCTORS, start=SEED_DOCTORS)
    deliveries = max(1, events // BATCH_EVENTS)
    pool = bench.batches(deliveries, instance.app_secret, doctors=doctors)
    with bench.group() as group:
        _, base = instance.start_server(group, mode="api", name=f"ingest-{name}")
        result = bench.load(base + WEBHOOK, pool, duration=300.0, concurrency=16, count=deliveries)
    require_delivered(result, f"queueing {name}", strict=True)
    queued = instance.event_counts().get("queued", 0)
    if queued < deliveries * BATCH_EVENTS:
        raise BenchError(f"queueing {name}: {queued} of {deliveries * BATCH_EVENTS} queued")
    _analyze(instance)
    queue = Queue(instance=instance, events=queued)
    bench.queues[(kind, events, doctors)] = queue
    return queue


def _analyze(instance: Instance) -> None:
    """What autovacuum (PostgreSQL) or `PRAGMA optimize` would do after a bulk load."""
    engine = create_sync_engine(sync_url(instance.database_url))
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()


def _finished(instance: Instance) -> tuple[int, float | None]:
    """(finished events, events/s between the first and the last finish)."""
    count, span = instance.finish_span()
    if count < 2 or not span:
        return count, None
    return count, (count - 1) / span


def drain_once(
    bench: Bench,
    queue: Queue,
    graph: str,
    *,
    workers: int | None,
    window: float,
    sample_rss: bool = False,
    stop_early: bool = True,
) -> Row:
    """Copy the queue, start `workers` worker processes (None: `frontdesk serve`, the embedded
    worker), and let them work for at most `window` seconds or until the queue is empty."""
    instance = queue.copy(bench)
    instance.graph_url = graph
    enough = (bench.config.drain_enough if stop_early else 0) or queue.events
    try:
        with bench.group() as group:
            started = time.monotonic()
            if workers is None:
                server, _ = instance.start_server(group, mode="serve", name="serve-drain")
                processes = [server]
            else:
                processes = [
                    instance.start_worker(
                        group, name=f"worker-{number}", concurrency=bench.config.worker_concurrency
                    )
                    for number in range(workers)
                ]
            meter = CpuMeter(processes).start()
            samples: list[tuple[float, int, int]] = []  # (seconds, RSS KiB, finished events)
            peak = 0

            def sample(finished: int) -> None:
                nonlocal peak
                rss = processes[0].rss_kib()
                if rss is not None:
                    peak = max(peak, rss[1])
                    samples.append((round(time.monotonic() - started, 2), rss[0], finished))

            # The window opens once every process is up: a slow start on a loaded machine
            # must not eat the time the drain is measured in.
            deadline = time.monotonic() + window
            while True:
                for process in processes:
                    if not process.alive():
                        raise BenchError(f"{process.name} exited:\n{process.log_tail()}")
                counts = instance.event_counts()
                finished = sum(counts.get(status, 0) for status in FINAL_STATUSES)
                if sample_rss:
                    sample(finished)
                if finished >= min(enough, queue.events) or time.monotonic() >= deadline:
                    break
                time.sleep(0.5)
            if sample_rss:
                sample(finished)
            cpu = meter.stop()
            count, rate = _finished(instance)
            reasons = instance.reasons()
        if count == 0 or rate is None:
            raise BenchError(
                f"no event was processed within {window:.0f}s ({instance.event_counts()})"
            )
        row: Row = {
            "events_per_s": rate,
            "finished": count,
            "queued": queue.events,
            "complete": count >= queue.events,
            "seconds": time.monotonic() - started,
            "outcomes": reasons,
            "worker_cpu_pct": cpu["process_cpu_pct"],
            "machine_cpu_pct": cpu["machine_cpu_pct"],
        }
        if sample_rss and samples:
            row.update(rss_peak_kib=peak, rss_samples=samples)
        return row
    finally:
        queue.discard(bench, instance)


def drain(bench: Bench) -> dict[str, Any]:
    """`drain_events` queued events: PostgreSQL with 1, 2, 4 worker processes; SQLite with the
    embedded worker (`frontdesk serve`). Each run starts from a fresh copy of the same queue."""
    config = bench.config
    rows: list[Row] = []
    for kind in bench.database_kinds():
        try:
            queue = queue_events(bench, kind, f"drain-{kind}", config.drain_events)
        except BenchError as error:
            rows.append({"database": kind, "workers": "-", "status": "failed", "error": str(error)})
            continue
        setups: list[int | None] = list(config.drain_workers) if kind == "postgresql" else [None]
        with bench.group() as group:
            graph = bench.fake_graph(group)
            rows.extend(_drain_setups(bench, queue, graph, kind, setups))
    _scaling(rows)
    return {"rows": rows, "skipped": _skipped(bench)}


def _drain_setups(
    bench: Bench, queue: Queue, graph: str, kind: str, setups: list[int | None]
) -> list[Row]:
    config = bench.config
    rows: list[Row] = []
    for workers in setups:
        label = "embedded (serve)" if workers is None else f"{workers} worker process(es)"
        try:
            runs = [
                drain_once(bench, queue, graph, workers=workers, window=config.drain_window)
                for _ in range(config.runs)
            ]
        except BenchError as error:
            rows.append(
                {"database": kind, "workers": label, "status": "failed", "error": str(error)}
            )
            continue
        rows.append(
            {
                "database": kind,
                "workers": label,
                "processes": workers or 1,
                "status": "ok",
                "queued": queue.events,
                "window_s": config.drain_window,
                "events_per_s": figure([run["events_per_s"] for run in runs]),
                "finished": figure([run["finished"] for run in runs]),
                "worker_cpu_pct": figure([run["worker_cpu_pct"] for run in runs]),
                "machine_cpu_pct": figure([run["machine_cpu_pct"] for run in runs]),
                "complete": all(run["complete"] for run in runs),
                "runs": runs,
            }
        )
    return rows


def _scaling(rows: list[Row]) -> None:
    """Scaling efficiency: rate with n processes over n × the rate with one."""
    by_count = {
        row["processes"]: row["events_per_s"]["median"]
        for row in rows
        if row["status"] == "ok" and row["database"] == "postgresql"
    }
    one = by_count.get(1)
    for row in rows:
        if row["status"] != "ok" or row["database"] != "postgresql" or not one:
            continue
        row["scaling_efficiency"] = row["events_per_s"]["median"] / (row["processes"] * one)
        two = by_count.get(2)
        if row["processes"] == 4 and two:
            row["vs_2_workers"] = row["events_per_s"]["median"] / two


def memory(bench: Bench) -> dict[str, Any]:
    """RSS of `frontdesk serve` while it drains `drain_events` queued events (SQLite): at the
    start, at the end, the peak, and the growth per 1,000 events over the second half."""
    config = bench.config
    queue = queue_events(bench, "sqlite", "drain-sqlite", config.drain_events)
    with bench.group() as group:
        graph = bench.fake_graph(group)
        run = drain_once(
            bench,
            queue,
            graph,
            workers=None,
            window=config.memory_window,
            sample_rss=True,
            stop_early=False,
        )
    samples = run.get("rss_samples") or []
    if len(samples) < 2:
        raise BenchError("could not read the RSS of frontdesk serve")
    start, end = samples[0], samples[-1]
    middle = samples[len(samples) // 2]
    growth = (end[1] - start[1]) / 1024
    steady_events = end[2] - middle[2]
    per_thousand = (end[1] - middle[1]) / 1024 / steady_events * 1000 if steady_events else math.nan
    row = {
        "database": "sqlite",
        "status": "ok",
        "queued": queue.events,
        "finished": run["finished"],
        "complete": run["complete"],
        "window_s": config.memory_window,
        "events_per_s": run["events_per_s"],
        "rss_start_mib": start[1] / 1024,
        "rss_end_mib": end[1] / 1024,
        "rss_peak_mib": run.get("rss_peak_kib", end[1]) / 1024,
        "growth_mib": growth,
        "growth_mib_per_1000_events": per_thousand,
        "growth_mib_projected_50k": growth + per_thousand * max(0, 50_000 - run["finished"]) / 1000,
        "rss_samples": samples[:: max(1, len(samples) // 60)],
    }
    return {"rows": [row]}


def tenants(bench: Bench) -> dict[str, Any]:
    """Per-event cost of the worker with few and with very many connected doctors (one worker
    process; PostgreSQL when available). Every event is a first message from a new patient."""
    config = bench.config
    kind = "postgresql" if "postgresql" in bench.database_kinds() else "sqlite"
    rows: list[Row] = []
    with bench.group() as group:
        graph = bench.fake_graph(group)
        for doctors in config.tenant_doctors:
            began = time.monotonic()
            queue = queue_events(
                bench, kind, f"tenants-{doctors}", config.tenant_events, doctors=doctors
            )
            setup = time.monotonic() - began
            workers = 1 if kind == "postgresql" else None
            runs = [
                drain_once(bench, queue, graph, workers=workers, window=config.tenant_window)
                for _ in range(config.runs)
            ]
            rows.append(
                {
                    "database": kind,
                    "doctors": doctors,
                    "status": "ok",
                    "queued": queue.events,
                    "setup_s": setup,
                    "events_per_s": figure([run["events_per_s"] for run in runs]),
                    "ms_per_event": figure([1000 / run["events_per_s"] for run in runs]),
                    "runs": runs,
                }
            )
    few, many = rows[0]["ms_per_event"]["median"], rows[-1]["ms_per_event"]["median"]
    return {"rows": rows, "ratio": many / few if few else math.nan}


SCENARIOS: dict[str, Callable[[Bench], dict[str, Any]]] = {
    "intake": intake,
    "latency": latency,
    "drain": drain,
    "memory": memory,
    "tenants": tenants,
    "e2e": end_to_end,
}
