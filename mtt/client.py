"""Running the service and loading it: the service in a child process, and a load-test client.

* :func:`service_process` / :func:`running_service`: ``mtt serve MODEL_DIR ...`` in a child process
  while a ``with`` block runs, for a notebook, a test or a benchmark.
* :func:`benchmark_service`: concurrent clients send requests of K texts to a running service; the
  report gives latency percentiles, requests and texts per second, and errors by status. Standard
  library only (threads and ``http.client``), so it runs without FastAPI.

Example::

    with running_service("onnx_model", "--backend", "onnx", "--precision", "int8-safe") as url:
        benchmark_service(url, texts, batch_size=4, requests=200, concurrency=16)
"""

from __future__ import annotations

import http.client
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

# ----------------------------------------------------------------------------- the service in a child process
@dataclass(frozen=True)
class ServiceProcess:
    """A service running in a child process."""

    url: str
    """The base URL, e.g. ``"http://127.0.0.1:41234"``."""

    pid: int
    """The child's process id (the server itself), e.g. to read its memory in ``/proc/PID/status``."""


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextmanager
def running_service(
    model_dir: str | os.PathLike, *options: str, host: str = "127.0.0.1", port: int | None = None,
    timeout: float = 120.0,
) -> Iterator[str]:
    """Runs ``mtt serve MODEL_DIR *options`` in a child process while the block runs; yields its base
    URL. The arguments and errors are :func:`service_process`'s."""
    with service_process(model_dir, *options, host=host, port=port, timeout=timeout) as service:
        yield service.url


@contextmanager
def service_process(
    model_dir: str | os.PathLike, *options: str, host: str = "127.0.0.1", port: int | None = None,
    timeout: float = 120.0,
) -> Iterator[ServiceProcess]:
    """Runs ``mtt serve MODEL_DIR *options`` (as ``python -m mtt serve``) in a child process
    while the block runs.

    Example::

        with service_process("onnx_model", "--backend", "onnx", "--precision", "int8-safe") as service:
            benchmark_service(service.url, texts, batch_size=4, requests=200, concurrency=16)

    Args:
        model_dir: Passed to the command.
        *options: More command-line options (``--backend``, ``--precision``, ``--max-texts``...).
        host: Address to listen on.
        port: Port; ``None`` picks a free one.
        timeout: Seconds to wait for ``GET /health`` to answer 200.

    Yields:
        The :class:`ServiceProcess` (URL and process id), once ``/health`` answers 200.

    Raises:
        RuntimeError: the server exited or did not become healthy in time; the message holds
            the end of its stderr.

    The process is stopped (terminated, killed after 10 s) when the block ends, also on an error.
    """
    import fastapi  # noqa: F401  (the child process serves with FastAPI and uvicorn: the `serve` extra)
    import uvicorn  # noqa: F401

    port = _free_port(host) if port is None else port
    url = f"http://{host}:{port}"
    command = [sys.executable, "-m", "mtt", "serve", str(model_dir), "--host", host, "--port", str(port),
               *options]
    with tempfile.TemporaryFile(mode="w+") as stderr:  # a file, not a pipe: a full pipe would block the server
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, text=True)

        def failure(reason: str) -> RuntimeError:
            stderr.seek(0)
            return RuntimeError(f"{' '.join(command[1:])}: {reason}\n{stderr.read()[-2000:]}")

        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise failure(f"the server exited with code {process.returncode}")
                try:
                    with urllib.request.urlopen(url + "/health", timeout=5) as answer:
                        if answer.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass  # not listening yet, or 503 while the model loads
                if time.monotonic() > deadline:
                    raise failure(f"GET /health did not answer 200 within {timeout:.0f} s")
                time.sleep(0.2)
            yield ServiceProcess(url, process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()



# ----------------------------------------------------------------------------- the load-test client
Status = int | str
"""An HTTP status, or the name of the error when no answer came (``"ConnectionResetError"``)."""


def load_summary(latencies_s: Sequence[float], statuses: Sequence[Status], seconds: float,
                 texts_per_request: int) -> dict:
    """The report of one load run.

    Args:
        latencies_s: Seconds from sending each request to reading its whole answer.
        statuses: Each request's status, in the order of ``latencies_s``.
        seconds: Wall time of the whole run.
        texts_per_request: Texts in each request.

    Returns:
        ``requests`` (sent), ``seconds``, ``requests_per_s`` and ``texts_per_s`` (answered 200, per
        second of the run), ``p50_ms``, ``p95_ms`` and ``p99_ms`` (latency percentiles of the 200
        answers, linear interpolation between the two nearest; NaN without any), and ``errors``
        (``{status: count}`` of the other answers).
    """
    if len(latencies_s) != len(statuses) or not statuses or not seconds > 0:
        raise ValueError("load_summary needs one status per latency, at least one request and seconds > 0.")
    answered = sorted(latency for latency, status in zip(latencies_s, statuses) if status == 200)
    if len(answered) > 1:
        cuts = statistics.quantiles(answered, n=100, method="inclusive")  # cuts[k - 1]: the k-th percentile
        p50, p95, p99 = cuts[49], cuts[94], cuts[98]
    else:
        p50 = p95 = p99 = answered[0] if answered else math.nan
    return {
        "requests": len(statuses),
        "seconds": seconds,
        "requests_per_s": len(answered) / seconds,
        "texts_per_s": len(answered) * texts_per_request / seconds,
        "p50_ms": 1000 * p50,
        "p95_ms": 1000 * p95,
        "p99_ms": 1000 * p99,
        "errors": dict(sorted(Counter(str(s) for s in statuses if s != 200).items())),
    }


def run_load(send: Callable[[bytes], Status], bodies: Sequence[bytes], concurrency: int, texts_per_request: int,
             clock: Callable[[], float] = time.perf_counter) -> dict:
    """Sends ``bodies`` with ``concurrency`` clients at once (threads), each taking the next body when
    its answer has come; returns :func:`load_summary`'s report.

    Args:
        send: Sends one body and returns its status; called from several threads at once.
        bodies: The request bodies.
        concurrency: Clients (threads) sending at once.
        texts_per_request: Texts in each body (for ``texts_per_s``).
        clock: Seconds as a float; tests pass a fake clock.
    """
    if concurrency < 1 or not bodies:
        raise ValueError("run_load needs bodies and concurrency >= 1.")

    def timed(body: bytes) -> tuple[float, Status]:
        start = clock()
        status = send(body)
        return clock() - start, status

    start = clock()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="load-client") as pool:
        results = list(pool.map(timed, bodies))
    seconds = clock() - start
    return load_summary([latency for latency, _ in results], [status for _, status in results], seconds,
                        texts_per_request)


def http_sender(url: str, timeout: float = 60.0) -> Callable[[bytes], Status]:
    """``send(body)``: POSTs ``body`` as JSON to ``url`` on a new connection; the status, or the
    error's name when no answer came."""
    parts = urllib.parse.urlsplit(url)

    def send(body: bytes) -> Status:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        try:
            connection.request("POST", parts.path or "/", body=body, headers={"Content-Type": "application/json"})
            answer = connection.getresponse()
            answer.read()
            return answer.status
        except (OSError, http.client.HTTPException) as error:
            return type(error).__name__
        finally:
            connection.close()

    return send


def benchmark_service(
    url: str, texts: Sequence[str], batch_size: int, requests: int, concurrency: int = 1, timeout: float = 60.0
) -> dict:
    """Load-tests a running service's ``POST /predict``.

    Args:
        url: The service's base URL, e.g. ``"http://127.0.0.1:8000"``.
        texts: Texts to send, cycled through; each request takes the next ``batch_size``.
        batch_size: Texts per request.
        requests: Requests to send in total (after one untimed warm-up request).
        concurrency: Clients sending at once, each its next request as soon as its answer came.
        timeout: Seconds to wait for one answer.

    Returns:
        :func:`load_summary`'s report: ``requests_per_s``, ``texts_per_s``, ``p50_ms``, ``p95_ms``,
        ``p99_ms``, ``errors`` (``{status: count}``), ``requests`` and ``seconds``.

    Raises:
        RuntimeError: the warm-up request did not answer 200.
    """
    if not texts or batch_size < 1 or requests < 1 or concurrency < 1:
        raise ValueError("benchmark_service needs texts, and batch_size, requests and concurrency >= 1.")
    send = http_sender(url.rstrip("/") + "/predict", timeout)
    bodies = [
        json.dumps({"texts": [texts[(i * batch_size + j) % len(texts)] for j in range(batch_size)]}).encode()
        for i in range(requests)
    ]
    status = send(bodies[0])  # warm-up: first-call allocations are not the service's steady state
    if status != 200:
        raise RuntimeError(f"{url}/predict answered {status} to the warm-up request.")
    return run_load(send, bodies, concurrency, batch_size)
