"""A TCP proxy on 127.0.0.1 that delays what the client sends: a round trip's latency for a loopback server.

    python bench/latency_proxy.py LISTEN_PORT UPSTREAM_PORT DELAY_MS

Each chunk the client sends waits DELAY_MS before it goes on to the upstream
server (answers come back at once), so a request sent in one piece, as an S3
HEAD or a small PUT is, takes about DELAY_MS more, as it would with that round
trip to a server elsewhere. For measuring what a client does with latency
(requests one after another, or several at a time), not for tests.
"""

from __future__ import annotations

import asyncio
import sys


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    try:
        while data := await reader.read(65536):
            if delay:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main(listen: int, upstream: int, delay: float) -> None:
    async def serve(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pump(client_reader, server_writer, delay), _pump(server_reader, client_writer, 0))

    server = await asyncio.start_server(serve, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000))
