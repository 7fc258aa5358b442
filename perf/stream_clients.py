"""Streaming clients for perf/reload_drain.sh.

load ADDR N SECONDS: N keep-alive clients stream chat completions in a loop
for SECONDS; prints "failed F / T".
drain ADDR N PID: opens N streams, sends SIGTERM to PID once all are live,
then checks every stream ends with [DONE] and new connections are refused.
"""
import os
import signal
import socket
import sys
import threading
import time

BODY = b'{"model":"m","stream":true,"max_tokens":8,"messages":[{"role":"user","content":"hi"}]}'


def request(delay_ms):
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + f"x-mock-chunk-delay-ms: {delay_ms}\r\ncontent-length: {len(BODY)}\r\n\r\n".encode()
        + BODY
    )


def read_stream(f):
    status = f.readline()
    if not status:
        raise IOError("closed before the answer")
    while f.readline() not in (b"\r\n", b""):
        pass
    body = b""
    while True:
        size = int(f.readline().strip() or b"0", 16)
        chunk = f.read(size + 2)
        if size == 0:
            break
        body += chunk[:-2]
    if b" 200 " not in status or not body.endswith(b"data: [DONE]\n\n"):
        raise IOError(f"bad stream: {status!r} {body[-80:]!r}")


def load(addr, n, seconds):
    host, port = addr.split(":")
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()
    deadline = time.time() + seconds

    def client():
        s = socket.create_connection((host, int(port)), timeout=10)
        f = s.makefile("rb")
        while time.time() < deadline:
            try:
                s.sendall(request(20))
                read_stream(f)
                key = "ok"
            except Exception:
                key = "failed"
                s = socket.create_connection((host, int(port)), timeout=10)
                f = s.makefile("rb")
            with lock:
                counts[key] += 1

    threads = [threading.Thread(target=client) for _ in range(n)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(f"failed {counts['failed']} / {counts['ok'] + counts['failed']}")


def drain(addr, n, pid):
    host, port = addr.split(":")
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)), timeout=20)
        s.sendall(request(250))
        socks.append(s)
    files = [s.makefile("rb") for s in socks]
    for f in files:  # every stream is live: its head arrived
        assert f.readline().startswith(b"HTTP/1.1 200"), "stream did not start"
        while f.readline() not in (b"\r\n", b""):
            pass
    os.kill(pid, signal.SIGTERM)
    time.sleep(0.3)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        refused = False
    except OSError:
        refused = True
    failed = 0
    for f in files:
        body = b""
        try:
            while True:
                size = int(f.readline().strip() or b"0", 16)
                chunk = f.read(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
            if not body.endswith(b"data: [DONE]\n\n"):
                failed += 1
        except Exception:
            failed += 1
    print(f"streams failed {failed} / {n}; new connections refused: {refused}")


if __name__ == "__main__":
    mode, addr = sys.argv[1], sys.argv[2]
    if mode == "load":
        load(addr, int(sys.argv[3]), float(sys.argv[4]))
    else:
        drain(addr, int(sys.argv[3]), int(sys.argv[4]))
