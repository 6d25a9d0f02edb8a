"""A loopback TCP proxy that can be cut: the database "goes away" for the processes behind it.

It runs its own event loop on a thread, so whatever the test's loop is doing (posting load,
serving the fake Graph API) never slows the bytes down. Two ways to lose the database:

- `cut()` closes every open connection and refuses new ones (the listening socket is closed:
  connecting gets ECONNREFUSED at once), as when the server is down;
- `stall()` keeps every connection open but moves no byte, and new connections wait, as in a
  network partition: whoever waits for an answer waits until something times out.

`restore()` ends either: it listens on the same port again, and stalled bytes flow on.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine, Iterator
from typing import Any

CHUNK = 65536


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections_accepted = 0
        self.connections_cut = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-proxy", daemon=True
        )
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._cut = False
        self._flowing: asyncio.Event | None = None

    def start(self) -> None:
        self._thread.start()
        self._call(self._listen())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._close_everything())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def cut(self) -> None:
        """Close every open connection and refuse new ones until `restore()`."""
        self._call(self._close_everything(cut=True))

    def stall(self) -> None:
        """Hold every byte, both ways, on open and new connections, until `restore()`."""
        self._call(self._set_flowing(False))

    def restore(self) -> None:
        self._call(self._set_flowing(True))
        if self._server is None:
            self._call(self._listen())

    async def _set_flowing(self, flowing: bool) -> None:
        if self._flowing is None:
            self._flowing = asyncio.Event()
            self._flowing.set()
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    @property
    def is_cut(self) -> bool:
        return self._cut

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        await self._set_flowing(True)
        self._cut = False
        server_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server_socket.bind(("127.0.0.1", self.port))
        self.port = server_socket.getsockname()[1]
        self._server = await asyncio.start_server(self._accept, sock=server_socket)

    async def _close_everything(self, *, cut: bool = False) -> None:
        self._cut = cut
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            if cut:
                self.connections_cut += 1
            _abort(writer)
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            _abort(writer)
            return
        self.connections_accepted += 1
        await self._wait_for_flow()
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _abort(writer)
            return
        self._writers.update((writer, upstream_writer))
        await asyncio.gather(
            self._pipe(reader, upstream_writer),
            self._pipe(upstream_reader, writer),
            return_exceptions=True,
        )
        for each in (writer, upstream_writer):
            self._writers.discard(each)
            _abort(each)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                await self._wait_for_flow()
                writer.write(data)
                await writer.drain()
        finally:
            _abort(writer)

    async def _wait_for_flow(self) -> None:
        if self._flowing is not None:
            await self._flowing.wait()


def _abort(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.transport.abort()


@contextlib.contextmanager
def proxy_to(host: str, port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(host, port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
