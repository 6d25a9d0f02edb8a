"""A small HTTP/1.1 load generator, run as its own process: `python -m bench.loadgen ...`.

It replays a pool file (see bench/workload.py) against one URL over keep-alive connections:

- `--concurrency C` (closed loop): C connections, each sending its next request as soon as
  the previous answer arrived, for `--duration` seconds.
- `--count N` stops after N requests (each pool line sent once when N is the pool size);
  `--duration` is then the upper bound.
- `--rate R` (open loop): requests are due at fixed times (R per second); latency is measured
  from the time a request was due, so a stalled server cannot hide its queueing delay
  (no coordinated omission). Connections are opened as needed up to `--max-connections`.

Prints one JSON document (or writes it to `--out`): request and status counts, connection
errors, latency percentiles in milliseconds, the sum of the `events` members of JSON answers,
and with `--record` the wall-clock send time and status of every request by key.
Bounded in time: after `duration + --grace` seconds everything still running is abandoned.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.workload import read_pool

REQUEST_TIMEOUT = 10.0


class _HttpConnection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: Any = None  # asyncio's or uvloop's transport
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("connection closed"))

    def _complete(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        head_end = self._buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(self._buffer[:head_end])
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length is None:
            waiter.set_exception(ConnectionError("answer without content-length"))
            return
        total = head_end + 4 + length
        if len(self._buffer) < total:
            return
        body = bytes(self._buffer[head_end + 4 : total])
        del self._buffer[:total]
        waiter.set_result((int(head[9:12]), body))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if self.closed or self.transport is None:
            raise ConnectionError("connection closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self._waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class _Results:
    warmup_until: float
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    issued: int = 0
    events_reported: int = 0
    first_done: float | None = None
    last_done: float | None = None
    sent: list[tuple[str, float, int]] = field(default_factory=list)
    record: bool = False

    def add(self, key: str, due: float, sent_wall: float, status: int, body: bytes) -> None:
        now = time.perf_counter()
        if due < self.warmup_until:
            return
        self.latencies_ms.append((now - due) * 1000.0)
        self.statuses[status] += 1
        if self.first_done is None:
            self.first_done = due
        self.last_done = now
        if 200 <= status < 300 and body.startswith(b"{"):
            with contextlib.suppress(ValueError):
                events = json.loads(body).get("events")
                if isinstance(events, int):
                    self.events_reported += events
        if self.record:
            self.sent.append((key, sent_wall, status))

    def error(self, due: float) -> None:
        if due >= self.warmup_until:
            self.errors += 1


def _raw_requests(pool: Path, url: str) -> list[tuple[str, bytes]]:
    parts = urlsplit(url)
    host = parts.netloc
    path = parts.path or "/"
    raw = []
    for key, signature, body in read_pool(pool):
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"X-Hub-Signature-256: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        raw.append((key, head.encode() + body))
    return raw


class _Source:
    """Hands out the pool's requests in order; wraps around (and says so) when exhausted.

    With `count`, it hands out that many and then None.
    """

    def __init__(self, requests: list[tuple[str, bytes]], count: int = 0) -> None:
        self._requests = requests
        self._next = 0
        self._left = count if count > 0 else -1
        self.wrapped = False

    def take(self) -> tuple[str, bytes] | None:
        if self._left == 0:
            return None
        self._left -= 1
        if self._next >= len(self._requests):
            self._next = 0
            self.wrapped = True
        request = self._requests[self._next]
        self._next += 1
        return request


async def _connect(host: str, port: int) -> _HttpConnection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(_HttpConnection, host, port)
    return protocol


async def _closed_loop(
    host: str, port: int, source: _Source, results: _Results, concurrency: int, stop_at: float
) -> None:
    async def client() -> None:
        connection: _HttpConnection | None = None
        while time.perf_counter() < stop_at:
            taken = source.take()
            if taken is None:
                break
            key, data = taken
            due = time.perf_counter()
            if due >= results.warmup_until:
                results.issued += 1
            try:
                if connection is None or connection.closed:
                    connection = await _connect(host, port)
                sent_wall = time.time()
                status, body = await asyncio.wait_for(connection.request(data), REQUEST_TIMEOUT)
            except (OSError, TimeoutError):
                results.error(due)
                if connection is not None:
                    connection.close()
                connection = None
                await asyncio.sleep(0.01)
                continue
            results.add(key, due, sent_wall, status, body)
        if connection is not None:
            connection.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))


async def _open_loop(
    host: str,
    port: int,
    source: _Source,
    results: _Results,
    rate: float,
    start: float,
    stop_at: float,
    max_connections: int,
) -> None:
    idle: list[_HttpConnection] = []
    opened = 0
    available = asyncio.Condition()
    tasks: set[asyncio.Task[None]] = set()

    async def checkout() -> _HttpConnection:
        nonlocal opened
        async with available:
            while True:
                while idle:
                    connection = idle.pop()
                    if not connection.closed:
                        return connection
                    opened -= 1
                if opened < max_connections:
                    opened += 1
                    break
                await available.wait()
        try:
            return await _connect(host, port)
        except OSError:
            async with available:
                opened -= 1
                available.notify()
            raise

    async def checkin(connection: _HttpConnection | None) -> None:
        nonlocal opened
        async with available:
            if connection is not None and not connection.closed:
                idle.append(connection)
            else:
                opened -= 1
            available.notify()

    async def one(key: str, data: bytes, due: float) -> None:
        connection: _HttpConnection | None = None
        try:
            connection = await checkout()
            sent_wall = time.time()
            status, body = await asyncio.wait_for(connection.request(data), REQUEST_TIMEOUT)
        except (OSError, TimeoutError):
            results.error(due)
            if connection is not None:
                connection.close()
                connection.closed = True
            await checkin(connection)
            return
        results.add(key, due, sent_wall, status, body)
        await checkin(connection)

    interval = 1.0 / rate
    index = 0
    while True:
        due = start + index * interval
        if due >= stop_at:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        taken = source.take()
        if taken is None:
            break
        key, data = taken
        if due >= results.warmup_until:
            results.issued += 1
        task = asyncio.create_task(one(key, data, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        index += 1
    if tasks:
        await asyncio.wait(tasks)


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return math.nan
    rank = max(0, min(len(sorted_values) - 1, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


def summarize_latencies(values: list[float] | array[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}
    return {
        "p50": _percentile(ordered, 0.50),
        "p90": _percentile(ordered, 0.90),
        "p95": _percentile(ordered, 0.95),
        "p99": _percentile(ordered, 0.99),
        "max": ordered[-1],
        "mean": sum(ordered) / len(ordered),
    }


async def run(args: argparse.Namespace) -> dict[str, object]:
    parts = urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit("the load generator only talks to loopback")
    source = _Source(_raw_requests(Path(args.pool), args.url), args.count)
    begin = time.perf_counter()
    results = _Results(warmup_until=begin + args.warmup, record=args.record)
    stop_at = begin + args.warmup + args.duration
    if args.rate:
        work = _open_loop(
            host, port, source, results, args.rate, begin, stop_at, args.max_connections
        )
    else:
        work = _closed_loop(host, port, source, results, args.concurrency, stop_at)
    timed_out = False
    try:
        await asyncio.wait_for(work, args.warmup + args.duration + args.grace)
    except TimeoutError:
        timed_out = True
    measured = (results.last_done or stop_at) - (results.first_done or results.warmup_until)
    requests = sum(results.statuses.values())
    ok = sum(count for status, count in results.statuses.items() if 200 <= status < 300)
    return {
        "tool": "python-loadgen",
        "mode": "rate" if args.rate else "concurrency",
        "rate_target": args.rate or None,
        "concurrency": None if args.rate else args.concurrency,
        "duration_s": max(measured, 1e-9),
        "requests": requests,
        "ok": ok,
        "statuses": {str(status): count for status, count in sorted(results.statuses.items())},
        "errors": results.errors,
        # Due (or sent) but neither answered nor failed before the bound: count them as failed.
        "unanswered": max(0, results.issued - requests - results.errors),
        "timed_out": timed_out,
        "pool_wrapped": source.wrapped,
        "events_reported": results.events_reported,
        "latency_ms": summarize_latencies(results.latencies_ms),
        "sent": results.sent if args.record else None,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--pool", required=True, help="pool file written by bench.workload")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=0.0)
    parser.add_argument("--grace", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0.0, help="requests per second (open loop)")
    parser.add_argument("--max-connections", type=int, default=64)
    parser.add_argument("--count", type=int, default=0, help="stop after this many requests")
    parser.add_argument("--record", action="store_true", help="record send time per key")
    parser.add_argument("--out", help="write the JSON here instead of stdout")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop
        result = asyncio.run(run(args))
    else:
        result = uvloop.run(run(args))
    text = json.dumps(result)
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
