"""The load-test client: concurrent clients send requests of K texts to a running service, and
the report gives latency percentiles, requests and texts per second, and errors by status.

Standard library only (threads and ``http.client``), so it runs anywhere the service's users are,
without FastAPI. Example::

    benchmark_service("http://127.0.0.1:8000", texts, batch_size=4, requests=200, concurrency=16)
"""

from __future__ import annotations

import http.client
import json
import math
import statistics
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

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
