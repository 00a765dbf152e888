"""A loopback TCP proxy that counts the bytes each way and can cut connections.

Tests put it between a client and a node to see exactly what crosses the wire, and to
make a peer "vanish" after a given number of bytes, half-way through a stream.
"""

from __future__ import annotations

import trio


class Proxy:
    """Forwards ``127.0.0.1:<port>`` to ``127.0.0.1:target_port``.

    ``down_limit`` / ``up_limit``: each connection is closed once that many bytes went
    node→client / client→node (the bytes up to the limit are delivered).  ``bytes_down``
    and ``bytes_up`` count every byte forwarded, over all connections.
    """

    def __init__(
        self, target_port: int, *, down_limit: int | None = None, up_limit: int | None = None
    ) -> None:
        self.target_port = target_port
        self.down_limit = down_limit
        self.up_limit = up_limit
        self.bytes_down = 0
        self.bytes_up = 0
        self.connections = 0
        self.cuts = 0
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        try:
            server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        except OSError:
            await client.aclose()  # the target is not listening: the caller sees a reset
            return
        async with client, server, trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, client, server, "up", nursery.cancel_scope)
            nursery.start_soon(self._pump, server, client, "down", nursery.cancel_scope)

    async def _pump(
        self, source: trio.SocketStream, sink: trio.SocketStream, way: str, scope: trio.CancelScope
    ) -> None:
        limit = self.down_limit if way == "down" else self.up_limit
        sent = 0
        try:
            while data := await source.receive_some(65536):
                if limit is not None and sent + len(data) >= limit:
                    data = data[: limit - sent]
                    await sink.send_all(data)
                    self._count(way, len(data))
                    self.cuts += 1
                    scope.cancel()  # the peer "vanishes": both ways close at once
                    return
                await sink.send_all(data)
                sent += len(data)
                self._count(way, len(data))
            await sink.send_eof()  # a clean half-close passes through as one
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            scope.cancel()

    def _count(self, way: str, n: int) -> None:
        if way == "down":
            self.bytes_down += n
        else:
            self.bytes_up += n
