"""The HTTP service, tested against real servers on 127.0.0.1: the CLI in a subprocess, and
``create_app`` under uvicorn in a thread (for settings and the loading phase); slow clients, the
connection cap and a busy port against ``mtt serve`` itself."""

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from mtt.client import benchmark_service, running_service, service_process
from mtt.service import ServiceSettings, create_app
from mtt_helpers import MultiTaskSentenceTransformer
from mtt_helpers.data import load_bundled

HOST = "127.0.0.1"
MAX_TEXTS = 8
MAX_BODY = 20_000
LONG_TEXT = " ".join(["The committee discussed budgets, exams and marathon training schedules."] * 40)
"""About 400 words: over the model's 128-token limit, yet well under MAX_BODY bytes."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def request(port, method, path, body=None, headers=None, chunked=False):
    """One HTTP exchange; ``body`` is bytes, or a dict/list sent as JSON. Returns (status, parsed JSON or text)."""
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **(headers or {})}
    connection = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        if chunked:
            chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)]
            connection.request(method, path, body=iter(chunks), headers=headers, encode_chunked=True)
        else:
            connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        raw = answer.read()
    finally:
        connection.close()
    try:
        return answer.status, json.loads(raw)
    except ValueError:
        return answer.status, raw.decode("utf-8", "replace")


def wait_for_health(port, process=None, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"server exited early: {process.stderr.read()}")
        try:
            status, _ = request(port, "GET", "/health")
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become healthy in time")


@pytest.fixture(scope="module")
def reference(saved_model):
    """The same model as the server loads, for the expected predictions."""
    return MultiTaskSentenceTransformer.load(saved_model)


@pytest.fixture(scope="module")
def cli_server(saved_model):
    """``mtt serve`` in a subprocess (``running_service``); yields its port, stops it afterwards."""
    options = ["--max-texts", str(MAX_TEXTS), "--max-body-bytes", str(MAX_BODY)]
    with running_service(saved_model, *options, host=HOST) as url:
        yield int(url.rsplit(":", 1)[1])


class ThreadedServer:
    """uvicorn serving ``app`` on 127.0.0.1 in a background thread."""

    def __init__(self, app):
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


def check_against_model(predictions, texts, expected_table):
    """Labels equal ``model.predict``'s, probabilities equal up to batch-padding float noise."""
    assert [p["text"] for p in predictions] == texts
    assert [p["topic"] for p in predictions] == expected_table["text_class"].tolist()
    assert [p["sentiment"] for p in predictions] == expected_table["sentiment"].tolist()
    for task in ("topic", "sentiment"):
        labels = list(predictions[0]["probabilities"][task])
        got = np.array([[p["probabilities"][task][label] for label in labels] for p in predictions])
        want = expected_table[[f"prob_{task}_{label}" for label in labels]].to_numpy()
        assert np.abs(got - want).max() < 1e-5
        assert np.allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_happy_path_matches_model_predict(cli_server, reference):
    texts = ["Shares fell 4% after the earnings call.", "What a goal, what a match!", "Flu jabs, now at the pharmacy."]
    status, body = request(cli_server, "POST", "/predict", {"texts": texts})
    assert status == 200, body
    assert body["truncated"] == []
    assert set(body["predictions"][0]) == {"text", "topic", "sentiment", "probabilities"}
    assert list(body["predictions"][0]["probabilities"]["sentiment"]) == reference.config.tasks["sentiment"]
    check_against_model(body["predictions"], texts, reference.predict(texts))


def test_docs_and_health(cli_server):
    assert request(cli_server, "GET", "/health") == (200, {"status": "ok"})
    status, page = request(cli_server, "GET", "/docs")
    assert status == 200 and "swagger" in page.lower()
    status, schema = request(cli_server, "GET", "/openapi.json")
    assert status == 200 and "/predict" in schema["paths"]


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        ({"texts": []}, 422, "at least 1 item"),
        ({"texts": ["fine", 3]}, 422, '"texts", 1'),
        ({"texts": ["fine", None]}, 422, '"texts", 1'),
        ({"texts": "not a list"}, 422, "valid list"),
        ({}, 422, "missing"),
        ({"text": ["fine"]}, 422, "missing"),
        ([["fine"]], 422, "valid dictionary"),
        (b'{"texts": ["unterminated', 422, "json"),
        (b"\xff\xfe not utf-8", 422, "json"),
        (b'{"texts": ["caf\xe9"]}', 422, "not utf-8 text: byte 15 (0xe9)"),  # Latin-1: FastAPI alone answers 400
        (b"\xc3\x28", 422, "not utf-8 text: byte 0"),
        ('{"texts": ["ok"]}'.encode("utf-16"), 422, "not utf-8 text"),  # FastAPI alone would decode it
        ({"texts": ["fine", "   \n\t"]}, 422, "indices [1] are empty or whitespace only"),
        (b'{"texts": ["lone \\ud800 surrogate"]}', 422, "surrogate"),
        ({"texts": ["a"] * (MAX_TEXTS + 1)}, 413, f"limit is {MAX_TEXTS}"),
        ({"texts": ["x" * (MAX_BODY + 10)]}, 413, f"limit of {MAX_BODY} bytes"),
    ],
    ids=["empty list", "number", "null", "string not list", "missing field", "wrong field", "not an object",
         "broken json", "not utf-8", "latin-1", "invalid utf-8", "utf-16", "whitespace only", "lone surrogate", "too many texts", "body too large"],
)
def test_bad_input_gets_a_clear_4xx(cli_server, body, status, fragment):
    got_status, answer = request(cli_server, "POST", "/predict", body)
    assert got_status == status, answer
    assert fragment.lower() in json.dumps(answer).lower()


def test_a_chunked_body_over_the_limit_is_refused(cli_server):
    body = json.dumps({"texts": ["x" * (MAX_BODY + 10)]}).encode()
    status, answer = request(cli_server, "POST", "/predict", body, chunked=True)
    assert status == 413 and "bytes" in answer["detail"]
    small = json.dumps({"texts": ["What a goal!"]}).encode()
    assert request(cli_server, "POST", "/predict", small, chunked=True)[0] == 200


def test_wrong_content_type_is_422_not_500(cli_server):
    status, _ = request(cli_server, "POST", "/predict", b"texts=hello", headers={"Content-Type": "text/plain"})
    assert status == 422


def test_long_text_is_truncated_and_flagged(cli_server, reference):
    texts = ["Short one.", LONG_TEXT]
    status, body = request(cli_server, "POST", "/predict", {"texts": texts})
    assert status == 200 and body["truncated"] == [1]
    check_against_model(body["predictions"], texts, reference.predict(texts))


def test_long_text_is_refused_when_configured(reference):
    app = create_app(reference, ServiceSettings(on_long_text="refuse"))
    with ThreadedServer(app) as server:
        status, body = request(server.port, "POST", "/predict", {"texts": ["Short one.", LONG_TEXT]})
        assert status == 422 and "indices 1 (" in body["detail"] and "128 tokens" in body["detail"]
        assert request(server.port, "POST", "/predict", {"texts": ["Short one."]})[0] == 200


def test_health_is_503_until_the_model_has_loaded(reference):
    release = threading.Event()

    def slow_loader():
        assert release.wait(timeout=30)
        return reference

    with ThreadedServer(create_app(slow_loader)) as server:
        status, body = request(server.port, "GET", "/health")
        assert status == 503 and "loading" in body["detail"]
        assert request(server.port, "POST", "/predict", {"texts": ["hello"]})[0] == 503
        release.set()
        wait_for_health(server.port, timeout=30)
        assert request(server.port, "POST", "/predict", {"texts": ["hello"]})[0] == 200


def test_a_loader_that_fails_is_reported_by_health(reference):
    def broken_loader():
        raise FileNotFoundError("no such model")

    with ThreadedServer(create_app(broken_loader)) as server:
        deadline = time.monotonic() + 10
        while "failed" not in json.dumps(request(server.port, "GET", "/health")[1]):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert request(server.port, "GET", "/health")[0] == 503


def test_200_concurrent_requests_match_model_predict(cli_server, reference):
    pool = load_bundled()["text"].tolist()[:60]
    expected = reference.predict(pool).set_index("sentence")
    batches = [[pool[(i * 3 + j) % len(pool)] for j in range(1 + i % 3)] for i in range(200)]

    def send(texts):
        return texts, request(cli_server, "POST", "/predict", {"texts": texts})

    with ThreadPoolExecutor(max_workers=16) as executor:
        results = list(executor.map(send, batches))
    assert len(results) == 200
    for texts, (status, body) in results:
        assert status == 200, body
        check_against_model(body["predictions"], texts, expected.loc[texts].reset_index())


def test_benchmark_service_reports_rates_percentiles_and_no_errors(cli_server):
    start = time.perf_counter()
    stats = benchmark_service(f"http://{HOST}:{cli_server}", ["Hello there.", "Stocks rose."], batch_size=2,
                              requests=5, concurrency=2)
    wall = time.perf_counter() - start  # the warm-up request and the timed run
    assert stats["requests"] == 5 and stats["errors"] == {}
    assert 0 < stats["seconds"] <= wall and stats["requests_per_s"] >= 5 / wall
    assert 0 < stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"] <= 1000 * stats["seconds"]


def test_the_help_says_what_needs_the_internet():
    result = subprocess.run([sys.executable, "-m", "mtt", "serve", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert "/docs (Swagger UI) loads its page from a CDN and needs the internet" in " ".join(result.stdout.split())
    assert "/openapi.json" in result.stdout


def test_cli_refuses_a_missing_model_dir(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mtt", "serve", str(tmp_path / "nope"), "--port", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "model directory not found" in result.stderr


def test_cli_exits_when_the_model_cannot_load(tmp_path):
    (tmp_path / "config.json").write_text("[]")
    result = subprocess.run([sys.executable, "-m", "mtt", "serve", str(tmp_path), "--host", HOST,
                             "--port", str(free_port())], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "cannot load the model" in result.stderr


def test_running_service_stops_the_server_when_the_block_fails(saved_model):
    with pytest.raises(KeyError, match="inside the block"):
        with running_service(saved_model, host=HOST) as url:
            port = int(url.rsplit(":", 1)[1])
            assert request(port, "GET", "/health")[0] == 200
            raise KeyError("inside the block")
    with pytest.raises(OSError):  # nothing listens there any more
        request(port, "GET", "/health")


def test_running_service_reports_a_server_that_exits(tmp_path):
    (tmp_path / "config.json").write_text("[]")
    with pytest.raises(RuntimeError, match="exited with code 2") as error:
        with running_service(tmp_path, host=HOST):
            raise AssertionError("the block must not run")
    assert "cannot load the model" in str(error.value)  # the server's own stderr is in the message


SERVE_ONNX = """
import sys
from fastapi.testclient import TestClient
from mtt.backends import load_predictor
from mtt.service import ServiceSettings, create_app
model = load_predictor(sys.argv[1], "onnx", "int8-safe")
texts = ["What a goal!", " ".join(["The committee discussed budgets."] * 80)]
with TestClient(create_app(model)) as client:
    answer = client.post("/predict", json={"texts": texts}).json()
with TestClient(create_app(model, ServiceSettings(on_long_text="refuse"))) as client:
    refused = client.post("/predict", json={"texts": texts})
expected = model.predict(texts)["text_class"].tolist()
print(answer["truncated"], refused.status_code, [p["topic"] for p in answer["predictions"]] == expected)
heavy = ("torch", "sentence_transformers", "mtt_helpers")
print("torch or sentence-transformers imported:", any(name in sys.modules for name in heavy))
"""


def test_the_service_with_an_onnx_backend_never_imports_torch(onnx_export):
    result = subprocess.run([sys.executable, "-c", SERVE_ONNX, str(onnx_export)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == ["[1] 422 True", "torch or sentence-transformers imported: False"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
def test_mtt_serve_with_the_onnx_backend_loads_no_torch_library(onnx_export):
    with service_process(onnx_export, "--backend", "onnx", host=HOST) as service:
        port = int(service.url.rsplit(":", 1)[1])
        assert request(port, "POST", "/predict", {"texts": ["What a goal!"]})[0] == 200
        with open(f"/proc/{service.pid}/maps") as maps:
            libraries = {line.split()[-1] for line in maps if "/" in line}
    assert any("onnxruntime" in path for path in libraries)
    assert not [path for path in libraries if "torch" in path.rsplit("/", 1)[-1]]


# ----------------------------------------------------------------------------- slow clients, the cap, a busy port
READ_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 24


@pytest.fixture(scope="module")
def limited_server(onnx_export):
    """``mtt serve`` with the ONNX export (quick to load), a 1 s read timeout and at most 24 connections."""
    options = ["--backend", "onnx", "--read-timeout-s", str(READ_TIMEOUT_S), "--max-connections", str(MAX_CONNECTIONS)]
    with running_service(onnx_export, *options, host=HOST) as url:
        yield int(url.rsplit(":", 1)[1])


def stalled_clients(port, count, partial=b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Ty"):
    """``count`` connections that each sent ``partial`` (half a header block by default) and then nothing."""
    clients = []
    for _ in range(count):
        client = socket.create_connection((HOST, port), timeout=10)
        client.sendall(partial)
        clients.append(client)
    return clients


def seconds_until_closed(clients, start, limit):
    """For each client, the seconds from ``start`` until the server closed it; ``None`` if still open at ``limit``."""
    closed = []
    for client in clients:
        client.settimeout(max(0.01, start + limit - time.monotonic()))
        try:
            while client.recv(4096):  # an answer (none is expected), then the end of the stream
                pass
            closed.append(time.monotonic() - start)
        except ConnectionResetError:
            closed.append(time.monotonic() - start)
        except socket.timeout:
            closed.append(None)
        finally:
            client.close()
    return closed


def health_seconds(port):
    start = time.monotonic()
    status, _ = request(port, "GET", "/health")
    return status, time.monotonic() - start


def test_stalled_clients_are_dropped_after_the_read_timeout_and_health_answers_meanwhile(limited_server):
    """Clients that stop halfway through their headers, or through their body, hold no connection past
    --read-timeout-s; /health answers in well under a second while they are open."""
    start = time.monotonic()
    clients = stalled_clients(limited_server, 18)
    clients += stalled_clients(limited_server, 2, partial=b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                                            b"application/json\r\nContent-Length: 1000\r\n\r\n"
                                                            b'{"texts": ["hal')
    for _ in range(3):
        status, seconds = health_seconds(limited_server)
        assert status == 200 and seconds < 1.0
    closed = seconds_until_closed(clients, start, limit=READ_TIMEOUT_S + 4)
    assert None not in closed, closed  # without the read timeout uvicorn holds them for ever
    assert min(closed) >= 0.8 * READ_TIMEOUT_S and max(closed) <= READ_TIMEOUT_S + 2, closed
    assert request(limited_server, "POST", "/predict", {"texts": ["What a goal!"]})[0] == 200


def test_connections_over_the_cap_are_closed_and_the_cap_frees_as_stalled_ones_drop(limited_server):
    start = time.monotonic()
    clients = stalled_clients(limited_server, MAX_CONNECTIONS - 1)
    status, seconds = health_seconds(limited_server)  # the last connection within the cap is served, not 503
    assert status == 200 and seconds < 1.0
    clients += stalled_clients(limited_server, 1)  # the cap is full now
    over = socket.create_connection((HOST, limited_server), timeout=10)
    over.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert seconds_until_closed([over], time.monotonic(), limit=0.5)[0] is not None  # closed at once, no answer
    assert None not in seconds_until_closed(clients, start, limit=READ_TIMEOUT_S + 4)
    status, seconds = health_seconds(limited_server)
    assert status == 200 and seconds < 1.0


IMPORTS = """
import sys
from mtt.cli import main
try:
    main(sys.argv[1:])
finally:
    print("IMPORTED", *sorted(name for name in ("torch", "sentence_transformers", "onnxruntime", "mtt_helpers")
                               if name in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_serve_on_a_busy_port_is_one_line_before_the_model_loads(saved_model, onnx_export, backend):
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        model_dir = saved_model if backend == "torch" else onnx_export
        result = subprocess.run([sys.executable, "-c", IMPORTS, "serve", str(model_dir), "--backend", backend,
                                 "--host", HOST, "--port", str(port)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: cannot listen on {HOST}:{port}: Address already in use", "IMPORTED"]


@pytest.mark.parametrize("option, value, message", [
    ("--read-timeout-s", "0", "read_timeout_s must be > 0, got 0.0"),
    ("--max-connections", "0", "--max-connections: must be an integer >= 1, got 0"),
])
def test_serve_limits_are_checked_before_the_port_is_bound(saved_model, option, value, message):
    result = subprocess.run([sys.executable, "-m", "mtt", "serve", str(saved_model), "--port", "0", option, value],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr
