"""The load-test client's report, on known latencies and a fake clock (no server)."""

import socket
import threading

import pytest

from mtt.client import http_sender, load_summary, run_load


def test_percentiles_rates_and_errors_of_known_latencies():
    latencies = [ms / 1000 for ms in range(1, 101)] + [5.0, 7.0, 9.0]  # the last three failed
    statuses = [200] * 100 + [503, 503, "ConnectionResetError"]
    report = load_summary(latencies, statuses, seconds=4.0, texts_per_request=3)
    # Percentiles of the 100 answers of 1..100 ms, interpolated: the k-th lies at 1 + 0.99 k ms.
    assert report["p50_ms"] == pytest.approx(50.5)
    assert report["p95_ms"] == pytest.approx(95.05)
    assert report["p99_ms"] == pytest.approx(99.01)
    assert report["requests"] == 103
    assert report["requests_per_s"] == pytest.approx(25.0)  # answered requests only
    assert report["texts_per_s"] == pytest.approx(75.0)
    assert report["errors"] == {"503": 2, "ConnectionResetError": 1}


def test_a_single_answer_is_every_percentile_and_none_is_nan():
    assert load_summary([0.2], [200], 1.0, 1)["p99_ms"] == pytest.approx(200.0)
    report = load_summary([0.2], [504], 1.0, 1)
    assert report["requests_per_s"] == 0 and report["p50_ms"] != report["p50_ms"]  # NaN
    with pytest.raises(ValueError):
        load_summary([0.1, 0.2], [200], 1.0, 1)


class FakeClock:
    """Seconds that advance only when a fake request says so."""

    def __init__(self):
        self.now = 100.0
        self.lock = threading.Lock()

    def __call__(self):
        return self.now

    def advance(self, seconds):
        with self.lock:
            self.now += seconds


def test_run_load_times_each_request_and_the_whole_run():
    clock = FakeClock()
    durations = {b"fast": 0.1, b"slow": 0.5, b"refused": 0.05}

    def send(body):
        clock.advance(durations[body])
        return 503 if body == b"refused" else 200

    bodies = [b"fast"] * 8 + [b"slow", b"refused"]
    report = run_load(send, bodies, concurrency=1, texts_per_request=4, clock=clock)
    assert report["seconds"] == pytest.approx(0.8 + 0.5 + 0.05)
    assert report["requests_per_s"] == pytest.approx(9 / 1.35)
    assert report["texts_per_s"] == pytest.approx(36 / 1.35)
    assert report["p50_ms"] == pytest.approx(100.0)
    assert report["p99_ms"] == pytest.approx(100 + 0.92 * 400)  # between the 8th and 9th of 9 answers
    assert report["errors"] == {"503": 1}


def test_run_load_sends_every_body_from_several_clients():
    seen, threads = [], set()

    def send(body):
        seen.append(body)
        threads.add(threading.current_thread().name)
        return 200

    bodies = [str(i).encode() for i in range(40)]
    assert run_load(send, bodies, concurrency=4, texts_per_request=1)["requests"] == 40
    assert sorted(seen) == sorted(bodies)
    assert all(name.startswith("load-client") for name in threads)


def test_a_request_without_an_answer_is_reported_by_its_error():
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert http_sender(f"http://127.0.0.1:{port}/predict", timeout=5)(b"{}") == "ConnectionRefusedError"
