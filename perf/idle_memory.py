"""RSS added per idle keep-alive client connection: modelgate vs nginx.

Opens N connections to each proxy (after one request on each, so every
connection has served traffic and sits idle in keep-alive), then reads the
proxy processes' RSS from /proc. Run by perf/idle_memory.sh.
"""
import os
import resource
import socket
import sys
import time

REQ = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
       b"content-length: 27\r\n\r\n{\"model\":\"m\",\"messages\":[]}")


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def measure(name, addr, pids, n):
    host, port = addr.split(":")
    before = rss_kib(pids)
    socks = []
    for i in range(n):
        s = socket.create_connection((host, int(port)), timeout=10)
        s.sendall(REQ)
        socks.append(s)
        if len(socks) % 500 == 0:
            for t in socks[-500:]:
                t.recv(65536)
    for t in socks[len(socks) - len(socks) % 500:]:
        t.recv(65536)
    time.sleep(1.0)
    after = rss_kib(pids)
    per = (after - before) * 1024 / n
    print(f"{name:10s} {n} idle connections: RSS {before} KiB -> {after} KiB, {per / 1024:.2f} KiB per connection")
    for s in socks:
        s.close()
    return per


if __name__ == "__main__":
    n = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_NOFILE, (n * 2 + 100, n * 2 + 100))
    results = {}
    for spec in sys.argv[2:]:
        name, addr, pids = spec.split("=")
        results[name] = measure(name, addr, [int(p) for p in pids.split(",")], n)
    if "modelgate" in results and "nginx" in results:
        print(f"modelgate/nginx per-connection RSS: {results['modelgate'] / results['nginx']:.2f}x")
