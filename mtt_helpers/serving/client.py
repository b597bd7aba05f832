"""The load-test client: requests per second and latency percentiles of a running service."""

from __future__ import annotations

import json
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor


def benchmark_service(
    url: str, texts: Sequence[str], batch_size: int, requests: int, concurrency: int = 1, timeout: float = 60.0
) -> dict[str, float]:
    """Measures a running service: requests per second and latency percentiles.

    Args:
        url: The service's base URL, e.g. ``"http://127.0.0.1:8000"``.
        texts: Texts to send, cycled through; each request takes the next ``batch_size``.
        batch_size: Texts per request.
        requests: Requests to send in total (after one untimed warm-up request).
        concurrency: Requests in flight at once.
        timeout: Seconds to wait for one answer.

    Returns:
        ``requests_per_s``, ``texts_per_s``, ``p50_ms`` and ``p95_ms`` (latency of one request).

    Raises:
        RuntimeError: a request did not answer 200.
    """
    if not texts or batch_size < 1 or requests < 1 or concurrency < 1:
        raise ValueError("benchmark_service needs texts, and batch_size, requests and concurrency >= 1.")
    endpoint = url.rstrip("/") + "/predict"
    bodies = [
        json.dumps({"texts": [texts[(i * batch_size + j) % len(texts)] for j in range(batch_size)]}).encode()
        for i in range(requests)
    ]

    def send(body: bytes) -> float:
        start = time.perf_counter()
        request = urllib.request.Request(endpoint, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                answer.read()
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"{endpoint} answered {error.code}: {error.read()[:200]!r}") from error
        return time.perf_counter() - start

    send(bodies[0])  # warm-up: first-call allocations are not the service's steady state
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        latencies = list(pool.map(send, bodies))
    elapsed = time.perf_counter() - start
    percentiles = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return {
        "requests_per_s": requests / elapsed,
        "texts_per_s": requests * batch_size / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * percentiles[94],
    }
