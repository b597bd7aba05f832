"""Stalled clients against ``mtt serve``: /health latency while N connections hang mid-header, and how
long the service holds each of them.

    python benchmarks/stalled_clients.py ONNX_DIR [--clients 2000] [--read-timeout-s 10]
    python benchmarks/stalled_clients.py --url http://127.0.0.1:8000 [--clients 2000]

With ONNX_DIR (an export: ``mtt export MODEL_DIR ONNX_DIR``) the service runs as ``mtt serve ONNX_DIR
--backend onnx --read-timeout-s S`` in a child process, every other option at its default (at most
4,096 connections); with ``--url`` an already running service is measured instead. Each client
connects and sends half a header block (``POST /predict HTTP/1.1``, ``Host``, part of a header
name), then nothing. While they are open, ``GET /health`` is timed on a fresh connection every
0.25 s; each stalled connection is watched until the service closes it. Prints the /health
latencies (median and largest, and any that failed), and the seconds from each client's connect to
the close (smallest, median, largest), with how many were still open when the watch ended
(once all were closed, or after ``--watch-s``, default read timeout + 5 s).

Measured on a 2-core machine (``benchmarks/stalled_clients.py EXPORT``, default read timeout 10 s):
2,000 stalled clients, /health median 2.7 ms and largest 147 ms, every client dropped 10.0-10.2 s
after its connect. The service before the read timeout (``--url`` at it) held all 2,000 for the
whole 30 s watch.
"""

from __future__ import annotations

import argparse
import http.client
import resource
import selectors
import socket
import statistics
import threading
import time
import urllib.parse

PARTIAL_REQUEST = b"POST /predict HTTP/1.1\r\nHost: benchmark\r\nContent-Ty"
"""What each stalled client sends before it stops: half a header block."""


def open_stalled_clients(host: str, port: int, count: int) -> dict[socket.socket, float]:
    """``count`` connections that each sent :data:`PARTIAL_REQUEST`; each with the time it connected."""
    clients = {}
    for _ in range(count):
        client = socket.create_connection((host, port), timeout=10)
        connected = time.monotonic()
        client.sendall(PARTIAL_REQUEST)
        client.setblocking(False)
        clients[client] = connected
    return clients


def time_health(host: str, port: int, stop: threading.Event, latencies: list[float], failures: list[str]) -> None:
    """``GET /health`` on a new connection every 0.25 s until ``stop``; appends each latency (or the failure)."""
    while not stop.is_set():
        start = time.monotonic()
        connection = http.client.HTTPConnection(host, port, timeout=5)
        try:
            connection.request("GET", "/health")
            answer = connection.getresponse()
            answer.read()
            if answer.status == 200:
                latencies.append(time.monotonic() - start)
            else:
                failures.append(f"status {answer.status}")
        except (OSError, http.client.HTTPException) as error:
            failures.append(type(error).__name__)
        finally:
            connection.close()
        stop.wait(0.25)


def watch_closes(clients: dict[socket.socket, float], seconds: float) -> tuple[list[float], int]:
    """Seconds from connect to the service's close for each client, and how many were still open after ``seconds``."""
    selector = selectors.DefaultSelector()
    for client in clients:
        selector.register(client, selectors.EVENT_READ)
    held, deadline = [], time.monotonic() + seconds
    while len(held) < len(clients) and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
            try:
                data = key.fileobj.recv(4096)
            except ConnectionResetError:
                data = b""
            if not data:  # the end of the stream: the service closed it
                held.append(time.monotonic() - clients[key.fileobj])
                selector.unregister(key.fileobj)
    open_left = len(clients) - len(held)
    for client in clients:
        client.close()
    return held, open_left


def measure(url: str, count: int, watch_s: float) -> None:
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname, parts.port
    start = time.monotonic()
    clients = open_stalled_clients(host, port, count)
    print(f"{count} stalled clients connected in {time.monotonic() - start:.2f} s")
    stop, latencies, failures = threading.Event(), [], []
    prober = threading.Thread(target=time_health, args=(host, port, stop, latencies, failures), daemon=True)
    prober.start()
    held, open_left = watch_closes(clients, watch_s)
    stop.set()
    prober.join()
    if latencies:
        print(f"GET /health while they were open: {len(latencies)} answers, median {1000 * statistics.median(latencies):.1f} ms,"
              f" largest {1000 * max(latencies):.1f} ms; failures: {failures or 'none'}")
    else:
        print(f"GET /health while they were open: no answer; failures: {failures}")
    if held:
        print(f"closed by the service: {len(held)}, after {min(held):.2f} s (first), {statistics.median(held):.2f} s "
              f"(median), {max(held):.2f} s (last) from their connect")
    print(f"still open when the watch ended (all closed, or {watch_s:g} s): {open_left}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("onnx_dir", nargs="?", help="an ONNX export to serve (or --url)")
    parser.add_argument("--url", help="measure a service already running here instead")
    parser.add_argument("--clients", type=int, default=2000, help="stalled connections (default 2000)")
    parser.add_argument("--read-timeout-s", type=float, default=10.0, help="the service's read timeout (default 10)")
    parser.add_argument("--watch-s", type=float, help="how long to watch them (default read timeout + 5 s)")
    args = parser.parse_args()
    if (args.onnx_dir is None) == (args.url is None):
        parser.error("give ONNX_DIR or --url")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < args.clients + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(args.clients + 64, hard), hard))
    watch_s = args.watch_s if args.watch_s is not None else args.read_timeout_s + 5
    if args.url:
        measure(args.url, args.clients, watch_s)
        return
    from mtt.client import service_process

    with service_process(args.onnx_dir, "--backend", "onnx", "--read-timeout-s", str(args.read_timeout_s)) as service:
        measure(service.url, args.clients, watch_s)


if __name__ == "__main__":
    main()
