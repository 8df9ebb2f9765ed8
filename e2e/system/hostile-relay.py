#!/usr/bin/env python3
"""A relay turned hostile: what takes over a relay's port in the system test's drill.

Every HTTP request that is not a WebSocket upgrade (NIP-11) gets 2 MiB of broken JSON. Every
WebSocket connection, after the client's first message, gets a flood that never ends with EOSE:
events with forged ids and signatures for the client's subscription, frames that are not JSON,
binary frames, unknown and mismatched messages, NOTICE spam, and every 5,000 frames one text
frame of 2 MiB (over any sane message limit). The flood runs until the client goes away.

Standard library only. One line per connection on stdout:
    conn N from HOST:PORT: first ["REQ", …] → M frames (B bytes), ended: REASON
"""
import argparse
import base64
import hashlib
import json
import os
import socket
import socketserver
import struct
import sys
import threading
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
COUNTER = iter(range(1, 1 << 62))
LOCK = threading.Lock()


def log(msg):
    with LOCK:
        print(msg, flush=True)


def frame(payload: bytes, opcode: int) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def read_exact(f, n):
    b = f.read(n)
    if b is None or len(b) < n:
        raise EOFError
    return b


def read_frame(f):
    """One client frame (masked): (opcode, payload)."""
    b0, b1 = read_exact(f, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", read_exact(f, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", read_exact(f, 8))[0]
    mask = read_exact(f, 4) if b1 & 0x80 else b"\0\0\0\0"
    data = bytearray(read_exact(f, min(n, 1 << 20)))
    for i in range(len(data)):
        data[i] ^= mask[i % 4]
    return b0 & 0x0F, bytes(data)


def forged_event(i):
    # The shape of an event, with an id and a signature that belong to nothing.
    return {
        "id": hashlib.sha256(b"forged %d" % i).hexdigest(),
        "pubkey": hashlib.sha256(b"nobody").hexdigest(),
        "created_at": int(time.time()) - i % 3600,
        "kind": 1,
        "tags": [],
        "content": "forged %d" % i,
        "sig": (hashlib.sha256(b"sig %d" % i).hexdigest() * 2),
    }


def flood(sub, i):
    """The i-th frame of the flood: (opcode, payload)."""
    k = i % 6
    if i and i % 5000 == 0:
        return 1, b'["NOTICE","' + b"x" * (2 << 20) + b'"]'
    if k == 0:
        return 1, json.dumps(["EVENT", sub, forged_event(i)]).encode()
    if k == 1:
        return 1, b"{{{ not json " + str(i).encode()
    if k == 2:
        return 2, os.urandom(64)
    if k == 3:
        return 1, b'["NOTICE","flood %d"]' % i
    if k == 4:
        return 1, json.dumps(["EVENT", "not-your-subscription", forged_event(i)]).encode()
    return 1, json.dumps(["EOSE", "not-your-subscription"]).encode()


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        n = next(COUNTER)
        peer = "%s:%d" % self.client_address[:2]
        headers = {}
        try:
            self.rfile.readline()
            while True:
                line = self.rfile.readline(8192)
                if line in (b"\r\n", b"\n", b""):
                    break
                k, _, v = line.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
        except OSError:
            return
        if headers.get("upgrade", "").lower() != "websocket":
            body = b'{"name": "hostile", "supported_nips": [1, ' + b"9" * (2 << 20)
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/nostr+json\r\n"
                                 b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
            except OSError:
                pass
            log(f"conn {n} from {peer}: HTTP → 2 MiB of broken JSON")
            return
        accept = base64.b64encode(hashlib.sha1((headers.get("sec-websocket-key", "") + GUID).encode()).digest())
        self.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        first, sub = "nothing", "?"
        try:
            while True:
                op, data = read_frame(self.rfile)
                if op in (1, 2):
                    break
            first = data[:60].decode("utf-8", "replace")
            msg = json.loads(data)
            if isinstance(msg, list) and len(msg) > 1 and isinstance(msg[1], str):
                sub = msg[1]
        except (EOFError, OSError, ValueError):
            pass
        # The client's frames are drained (and ignored) while the flood goes out.
        threading.Thread(target=self.drain, daemon=True).start()
        sent = nbytes = 0
        reason = "?"
        try:
            while True:
                out = []
                for _ in range(50):
                    op, payload = flood(sub, sent)
                    out.append(frame(payload, op))
                    sent += 1
                buf = b"".join(out)
                self.request.sendall(buf)
                nbytes += len(buf)
                time.sleep(0.002)  # ~25,000 frames/s at most: a flood, not a CPU burner
        except OSError as e:
            reason = type(e).__name__
        log(f"conn {n} from {peer}: first {first} → {sent} frames ({nbytes} bytes), ended: {reason}")

    def drain(self):
        try:
            while read_frame(self.rfile)[0] != 8:
                pass
        except (EOFError, OSError):
            pass
        try:
            self.request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, help="HOST:PORT")
    a = ap.parse_args()
    host, _, port = a.listen.rpartition(":")
    with Server((host, int(port)), Handler) as s:
        log(f"hostile relay on {a.listen}")
        s.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
