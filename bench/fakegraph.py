"""The fake Graph API in its own process, noting when each reply arrived.

`python -m bench.fakegraph --port P` serves `frontdesk.testing.fake_graph.FakeGraphApi` on
loopback and adds two endpoints for the harness:

- `GET /_bench/sends` → `{"count": n, "sends": [[recipient_id, unix_time], ...]}`
- `POST /_bench/reset` forgets them.

The time is taken when the Send API call has been answered, with the wall clock
(CLOCK_REALTIME, shared by every process on the machine), so it can be compared with the send
times the load generator records.
"""

from __future__ import annotations

import argparse
import json
import time

import uvicorn
from starlette.types import Receive, Scope, Send

from frontdesk.testing.fake_graph import FakeGraphApi


class RecordingFakeGraph:
    def __init__(self) -> None:
        self.fake = FakeGraphApi()
        self.arrivals: list[tuple[str, float]] = []
        self._seen = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.fake.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path == "/_bench/sends":
            await self._json(send, {"count": len(self.arrivals), "sends": self.arrivals})
            return
        if path == "/_bench/reset":
            self.fake.reset()
            self.arrivals.clear()
            self._seen = 0
            await self._json(send, {"count": 0})
            return
        if path == "/_bench/healthz":
            await self._json(send, {"status": "ok"})
            return
        await self.fake.app(scope, receive, send)
        now = time.time()
        sends = self.fake.sends
        while self._seen < len(sends):
            self.arrivals.append((sends[self._seen].recipient_id, now))
            self._seen += 1

    @staticmethod
    async def _json(send: Send, value: object) -> None:
        body = json.dumps(value).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fakegraph", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    config = uvicorn.Config(
        RecordingFakeGraph(),
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
