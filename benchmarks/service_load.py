"""Load test of ``mtt serve``: one request per model call (before) vs dynamic batching (after).

    MTT_DATA_DIR=../shared/data python benchmarks/service_load.py [--backends torch onnx]

Saves a model (all-MiniLM-L6-v2 with seeded random heads, encoder included) and its ONNX export
(``mtt export``) in a temporary folder, takes 800 real texts (400 TweetEval + 400 HuffPost dev texts,
alternating), and for each backend starts the real service in a child process twice:

* before: ``--max-batch-texts 4 --max-wait-ms 0``, one 4-text request per model call, as the
  service ran before it batched;
* after: the default dynamic batching (``--max-batch-texts 64 --max-wait-ms 5``);

both with ``--request-timeout-s 600``, so that no request is dropped.

Each service gets 200 requests of 4 texts (800 texts) from 1, 16 and 200 concurrent clients
(``benchmark_service``); the table gives the percentiles, rates, errors, the run's wall time as a
multiple of the model's own time for the same 800 texts in one in-process ``predict`` (batch 64,
fastest of 3), and the service's resident memory (MB) before and after each load and its peak.
Then 200 concurrent requests check the answers against ``model.predict`` of each request alone.
The clients run on the same CPU as the service; timings depend on what else the machine runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from mtt.backends import load_predictor
from mtt.client import benchmark_service, service_process
from mtt.data import locate_data
from mtt_helpers import MultiTaskSentenceTransformer, load_encoder, quiet, set_seed
from mtt_helpers.measure import fastest_times, markdown_table

TEXTS_PER_REQUEST = 4
REQUESTS = 200
CLIENTS = (1, 16, 200)
MODES = {"before": ("--max-batch-texts", str(TEXTS_PER_REQUEST), "--max-wait-ms", "0"), "after": ()}
SERVICE_OPTIONS = ("--request-timeout-s", "600")
"""Every service: a timeout no request reaches, so that the table measures waiting, not dropping."""


def real_texts(folder: Path, per_source: int = 400) -> list[str]:
    """Alternating TweetEval and HuffPost dev texts, ``per_source`` of each."""
    tweets = pd.read_csv(folder / "tweeteval_sentiment" / "dev.csv")["text"].tolist()[:per_source]
    headlines = pd.read_csv(folder / "huffpost_news_category" / "dev.csv")["text"].tolist()[:per_source]
    return [text for pair in zip(tweets, headlines) for text in pair]


def memory_mb(pid: int) -> dict[str, float]:
    """``rss`` and ``peak`` (VmHWM) resident memory of a process, in MB (Linux)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"rss": int(fields["VmRSS"].split()[0]) / 1024, "peak": int(fields["VmHWM"].split()[0]) / 1024}


def answers_match(url: str, requests: list[list[str]], model) -> dict[str, float]:
    """Sends every request at once; share of answers whose labels equal ``model.predict`` of that
    request alone, and the largest probability difference."""

    def post(texts: list[str]) -> list[dict]:
        request = urllib.request.Request(url + "/predict", data=json.dumps({"texts": texts}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as answer:
            return json.load(answer)["predictions"]

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        served = list(pool.map(post, requests))
    same, largest = 0, 0.0
    for texts, predictions in zip(requests, served):
        expected = model.predict(texts)
        same += all(p[task] == expected[column].iloc[i] for i, p in enumerate(predictions)
                    for task, column in (("topic", "text_class"), ("sentiment", "sentiment")))
        for task, labels in model.config.tasks.items():
            got = np.array([[p["probabilities"][task][label] for label in labels] for p in predictions])
            largest = max(largest, float(np.abs(got - expected[[f"prob_{task}_{x}" for x in labels]].to_numpy()).max()))
    return {"same labels": same / len(requests), "largest probability difference": largest}


def load_rows(model_dir: Path, options: tuple[str, ...], texts: list[str], model, model_seconds: float) -> tuple:
    """One service: a row per client count, and its peak memory and answer check."""
    rows = []
    with service_process(model_dir, *options) as service:
        for clients in CLIENTS:
            before = memory_mb(service.pid)["rss"]
            stats = benchmark_service(service.url, texts, TEXTS_PER_REQUEST, REQUESTS, concurrency=clients,
                                      timeout=600)
            rows.append({"clients": clients, "p50 ms": stats["p50_ms"], "p95 ms": stats["p95_ms"],
                         "p99 ms": stats["p99_ms"], "requests/s": stats["requests_per_s"],
                         "texts/s": stats["texts_per_s"], "errors": stats["errors"] or "none",
                         "s": stats["seconds"], "x model time": stats["seconds"] / model_seconds,
                         "RSS before MB": before, "RSS after MB": memory_mb(service.pid)["rss"]})
            print(options, rows[-1], file=sys.stderr)
        requests = [texts[i * TEXTS_PER_REQUEST:(i + 1) * TEXTS_PER_REQUEST] for i in range(REQUESTS)]
        check = answers_match(service.url, requests, model)
        return rows, {"peak RSS MB": memory_mb(service.pid)["peak"], **check}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", choices=["torch", "onnx"], default=["torch", "onnx"])
    args = parser.parse_args()
    quiet()
    folder = locate_data().folder
    if folder is None:
        raise SystemExit("Set MTT_DATA_DIR to the folder holding tweeteval_sentiment/ and huffpost_news_category/.")
    texts = real_texts(folder)
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mtt_service_load_") as work:
        model_dir, onnx_dir = Path(work) / "model", Path(work) / "onnx"
        set_seed(0)
        MultiTaskSentenceTransformer(load_encoder(device="cpu")).save(model_dir, include_encoder=True)
        if "onnx" in args.backends:
            subprocess.run([sys.executable, "-m", "mtt", "export", str(model_dir), str(onnx_dir)], check=True,
                           stdout=subprocess.DEVNULL)
        rows, services = [], []
        for backend in args.backends:
            directory = onnx_dir if backend == "onnx" else model_dir
            model = load_predictor(directory, backend)
            model_seconds = fastest_times({"model": lambda: model.predict(texts, batch_size=64)})["model"]
            for mode, options in MODES.items():
                options = ("--backend", backend, *options, *SERVICE_OPTIONS)
                service_rows, summary = load_rows(directory, options, texts, model, model_seconds)
                rows += [{"backend": backend, "mode": mode, **row} for row in service_rows]
                services.append({"backend": backend, "mode": mode, "model s (800 texts)": model_seconds, **summary})
            del model
    print(f"{REQUESTS} requests of {TEXTS_PER_REQUEST} texts per row; before = one request per model call, "
          f"after = dynamic batching. {os.cpu_count()} CPUs, load average {load_at_start:.1f} at the start and "
          f"{os.getloadavg()[0]:.1f} at the end.\n")
    print(markdown_table(pd.DataFrame(rows).set_index("backend"), digits=1,
                         formats={"x model time": "{:.2f}x", "s": "{:.2f}"}))
    print()
    print(markdown_table(pd.DataFrame(services).set_index("backend"), digits=3,
                         formats={"peak RSS MB": "{:.0f}", "largest probability difference": "{:.1e}"}))


if __name__ == "__main__":
    main()
