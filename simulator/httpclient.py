"""A small asyncio HTTP/1.1 client on h11 (the HTTP/1.1 state machine wsproto already brings), for
the simulated phones: thousands of them in one process, each with a kept-alive connection for its
requests and one for its downlink stream, with no thread per connection.

`Connection.request` sends one request and reads its whole answer; `Connection.stream` sends a GET
and yields the body's chunks as they come. A connection the server closed is opened again on the
next request (a request that failed on a connection found closed is not repeated here: the caller
decides, as a phone's outbox does)."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import h11

READ_CHUNK = 65536


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    def __init__(self, host: str, port: int, timeout_s: float = 30.0, local_address: str | None = None) -> None:
        """`local_address`: the address this end binds to (a bench gives each simulated phone its own
        127.x.y.z, so the server's per-source limits count phones as they would from the field)."""
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.local_address = local_address
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._h11: h11.Connection | None = None

    async def _open(self) -> None:
        await self.close()
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port,
                                    local_addr=(self.local_address, 0) if self.local_address else None),
            self.timeout_s)
        self._h11 = h11.Connection(h11.CLIENT)

    async def close(self) -> None:
        writer, self._writer, self._reader, self._h11 = self._writer, None, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _reusable(self) -> bool:
        return (self._h11 is not None and self._h11.our_state is h11.IDLE
                and self._h11.their_state is h11.IDLE and not self._reader.at_eof())

    async def _send(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        if not self._reusable():
            await self._open()
        head = [("Host", f"{self.host}:{self.port}"), ("Content-Length", str(len(body))),
                *headers.items()]
        data = self._h11.send(h11.Request(method=method, target=path, headers=head))
        data += self._h11.send(h11.Data(data=body)) if body else b""
        data += self._h11.send(h11.EndOfMessage())
        self._writer.write(data)
        await self._writer.drain()

    async def _event(self):
        """The next HTTP event; an answer that breaks HTTP/1.1 (a connection cut mid-answer, a
        server's garbage) is a ConnectionError, as a lost connection is: the caller sends again."""
        try:
            while True:
                event = self._h11.next_event()
                if event is not h11.NEED_DATA:
                    return event
                self._h11.receive_data(await self._reader.read(READ_CHUNK))
        except h11.ProtocolError as exc:
            raise ConnectionError(f"not HTTP/1.1: {exc}") from exc

    async def _response(self) -> h11.Response:
        event = await self._event()
        while isinstance(event, h11.InformationalResponse):
            event = await self._event()
        if not isinstance(event, h11.Response):
            raise ConnectionError(f"no response: {event!r}")
        return event

    def _after(self) -> None:
        """Ready for the next request on this connection, or closed when either side ends it."""
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                      body: bytes = b"") -> Answer:
        try:
            return await asyncio.wait_for(self._request(method, path, headers or {}, body), self.timeout_s)
        except BaseException:
            await self.close()
            raise

    async def _request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        await self._send(method, path, headers, body)
        response = await self._response()
        chunks = []
        while not isinstance(event := await self._event(), h11.EndOfMessage):
            if isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("closed mid-answer")
            chunks.append(bytes(event.data))
        self._after()
        if not self._reusable():
            await self.close()
        return Answer(response.status_code, _headers(response), b"".join(chunks))

    async def stream(self, path: str, headers: dict[str, str] | None = None) -> AsyncIterator[bytes | Answer]:
        """GET `path`: first the Answer (status and headers, no body), then the body's chunks as
        they arrive, until the server ends it; the connection is closed afterwards."""
        try:
            await asyncio.wait_for(self._send("GET", path, headers or {}, b""), self.timeout_s)
            response = await asyncio.wait_for(self._response(), self.timeout_s)
            yield Answer(response.status_code, _headers(response), b"")
            while True:
                event = await self._event()
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    return
        finally:
            await self.close()


def _headers(response: h11.Response) -> dict[str, str]:
    return {name.decode().lower(): value.decode("latin-1") for name, value in response.headers}
