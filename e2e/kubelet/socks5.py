#!/usr/bin/env python3
"""A minimal SOCKS5 proxy (CONNECT, no auth; IPv4, IPv6 and host names resolved here, as
`socks5h://` asks): the host-command stand-in for the Tor sidecar image, which has no archive
on these machines. It gives the pod a proxy that answers on the sidecar's port, so the
sidecar's startup probe, the probe's proxy settings and relays through the proxy work.

It is not Tor: real Tor cannot bootstrap without the internet (no directory authorities, no
relays to build circuits through), so no onion service is reachable from these machines. The
stand-in instead serves a fixed map of `.onion` names (`--onion NAME=HOST:PORT`, any port
asked for): a CONNECT to a mapped name goes to its local target, a CONNECT to any other
`.onion` name is answered "host unreachable" (what Tor answers for an onion service it cannot
reach). The client side is what is real: the name is resolved by the proxy (socks5h), never
by the client.

    python3 socks5.py --listen 127.0.0.1:9050 [--onion <56 chars>.onion=127.0.0.1:7000 ...]
"""

import argparse
import asyncio
import ipaddress
import struct

ONIONS = {}  # ".onion" name → (host, port) it stands for


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
        if host.lower().endswith(".onion"):
            target = ONIONS.get(host.lower())
            print(f"onion {host}:{port} → {target[0]}:{target[1]}" if target else
                  f"onion {host}:{port}: not in the map, host unreachable", flush=True)
            if target is None:
                writer.write(b"\x05\x04\x00\x01" + bytes(6))  # host unreachable
                return writer.close()
            host, port = target
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
    ap.add_argument("--onion", action="append", default=[], metavar="NAME=HOST:PORT",
                    help="serve this .onion name from HOST:PORT (repeatable)")
    args = ap.parse_args()
    for m in args.onion:
        name, _, target = m.partition("=")
        t_host, _, t_port = target.rpartition(":")
        if not name.endswith(".onion") or not t_host or not t_port.isdigit():
            ap.error(f"--onion {m}: expected NAME.onion=HOST:PORT")
        ONIONS[name.lower()] = (t_host, int(t_port))
    host, port = args.listen.rsplit(":", 1)
    server = await asyncio.start_server(handle, host, int(port))
    print(f"socks5 stand-in listening on {host}:{port}"
          + "".join(f"; {n} → {h}:{p}" for n, (h, p) in ONIONS.items()), flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
