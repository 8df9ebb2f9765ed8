#!/usr/bin/env python3
"""A minimal SOCKS5 proxy (CONNECT, no auth; IPv4, IPv6 and host names resolved here, as
`socks5h://` asks): the host-command stand-in for the Tor sidecar image, which has no archive
on these machines. It reaches nothing Tor would (no .onion); it gives the pod a proxy that
answers on the sidecar's port, so the sidecar's startup probe, the probe's proxy settings and
clearnet relays through the proxy work.

    python3 socks5.py --listen 127.0.0.1:9050
"""

import argparse
import asyncio
import ipaddress
import struct


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def handle(reader, writer):
    try:
        ver, n = await reader.readexactly(2)
        await reader.readexactly(n)
        if ver != 5:
            return writer.close()
        writer.write(b"\x05\x00")  # no authentication
        _, cmd, _, atyp = await reader.readexactly(4)
        if atyp == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif atyp == 4:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        else:
            host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
        port = struct.unpack("!H", await reader.readexactly(2))[0]
        if cmd != 1:  # CONNECT only
            writer.write(b"\x05\x07\x00\x01" + bytes(6))
            return writer.close()
        try:
            r2, w2 = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        except (OSError, asyncio.TimeoutError):
            writer.write(b"\x05\x05\x00\x01" + bytes(6))  # connection refused
            return writer.close()
        writer.write(b"\x05\x00\x00\x01" + bytes(6))
        await asyncio.gather(pipe(reader, w2), pipe(r2, writer))
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:9050")
    host, port = ap.parse_args().listen.rsplit(":", 1)
    server = await asyncio.start_server(handle, host, int(port))
    print(f"socks5 stand-in listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
