"""Dynamic batching in the service, driven in-process (httpx's ASGI transport, one event loop) with a
fake model that records each call and can be held busy, and once with the real model."""

import asyncio
import threading
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from mtt.service import ServiceSettings, create_app
from mtt_core.predictions import predictions_table

TASKS = {"topic": ["few words", "many words"], "sentiment": ["negative", "positive"]}


class WordTokenizer:
    """One token per word (the ONNX predictor's ``encode_batch`` interface)."""

    def encode_batch(self, texts):
        return [SimpleNamespace(ids=text.split()) for text in texts]


class FakeModel:
    """Topic from the word count, sentiment from the word "good"; records each call's texts.

    While ``free`` is cleared, a call waits (the model is busy) until the test sets it.
    """

    def __init__(self):
        self.config = SimpleNamespace(tasks=TASKS)
        self.tokenizer, self.max_seq_length = WordTokenizer(), 6
        self.calls, self.running, self.free = [], threading.Event(), threading.Event()
        self.free.set()

    def predict(self, texts, batch_size=32):
        self.calls.append(list(texts))
        self.running.set()
        assert self.free.wait(timeout=60)
        logits = {"topic": [[3.0, len(text.split())] for text in texts],
                  "sentiment": [[0.0, 1.0 if "good" in text else -1.0] for text in texts]}
        return predictions_table(texts, logits, TASKS)


def expected_labels(texts):
    return [("many words" if len(t.split()) > 3 else "few words", "positive" if "good" in t else "negative")
            for t in texts]


def texts_of(name, count):
    """Texts of different lengths, so that a request's texts run in another order than sent."""
    return [f"{name} text {i} " + "good " * (i % 3) + "word " * (count - i) for i in range(count)]


def run(app, scenario):
    """Runs ``scenario(client)`` on one event loop; stops the app's threads afterwards."""

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service", timeout=60) as client:
            return await scenario(client)

    try:
        return asyncio.run(main())
    finally:
        app.state.classifier.close()


async def until(condition, what):
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting until {what}")


async def post(client, texts):
    return await client.post("/predict", json={"texts": texts})


async def hold_the_model(client, model):
    """Sends one text and waits until the model is busy with it; returns its pending answer."""
    model.free.clear()
    first = asyncio.ensure_future(post(client, ["the first text"]))
    await until(model.running.is_set, "the model runs the first text")
    return first


def check_answer(answer, texts):
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert [p["text"] for p in predictions] == texts
    assert [(p["topic"], p["sentiment"]) for p in predictions] == expected_labels(texts)


def test_concurrent_requests_share_one_model_call_and_keep_their_order():
    model = FakeModel()
    app = create_app(model, ServiceSettings(max_batch_texts=64, max_wait_ms=0))
    requests = [texts_of(f"request {r}", 5) for r in range(6)]

    async def scenario(client):
        first = await hold_the_model(client, model)
        pending = [asyncio.ensure_future(post(client, texts)) for texts in requests]
        await until(lambda: app.state.classifier.batcher.queued == 30, "every request is queued")
        model.free.set()
        return [await first] + list(await asyncio.gather(*pending))

    answers = run(app, scenario)
    for answer, texts in zip(answers, [["the first text"]] + requests):
        check_answer(answer, texts)
    assert [len(call) for call in model.calls] == [1, 30]  # the six requests ran in one call


def test_a_large_request_is_split_and_other_requests_run_between_its_batches():
    model = FakeModel()
    app = create_app(model, ServiceSettings(max_batch_texts=4, max_wait_ms=0))
    large, small = texts_of("large", 10), texts_of("small", 2)

    async def scenario(client):
        first = await hold_the_model(client, model)
        pending = asyncio.ensure_future(post(client, large))
        await until(lambda: app.state.classifier.batcher.queued == 10, "the large request is queued")
        pending = [pending, asyncio.ensure_future(post(client, small))]
        await until(lambda: app.state.classifier.batcher.queued == 12, "the small request is queued")
        model.free.set()
        return [await first] + list(await asyncio.gather(*pending))

    answers = run(app, scenario)
    check_answer(answers[1], large)
    check_answer(answers[2], small)
    assert [len(call) for call in model.calls] == [1, 4, 4, 4]
    assert set(small) <= set(model.calls[2])  # the small request did not wait for all of the large one
    assert set(model.calls[3]) <= set(large)


def test_a_full_queue_answers_503_with_retry_after():
    model = FakeModel()
    app = create_app(model, ServiceSettings(max_texts=4, max_queue_texts=4, retry_after_s=2))

    async def scenario(client):
        first = await hold_the_model(client, model)
        queued = [asyncio.ensure_future(post(client, texts_of(name, 2))) for name in ("a", "b")]
        await until(lambda: app.state.classifier.batcher.queued == 4, "the queue is full")
        refused = await post(client, ["one more text"])
        model.free.set()
        return refused, await first, await asyncio.gather(*queued)

    refused, first, queued = run(app, scenario)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "2"
    assert "busy" in refused.json()["detail"] and "4 texts are waiting" in refused.json()["detail"]
    assert first.status_code == 200 and [answer.status_code for answer in queued] == [200, 200]


def test_a_request_past_its_timeout_gets_504_and_its_queued_texts_never_run():
    model = FakeModel()
    app = create_app(model, ServiceSettings(request_timeout_s=0.5))
    dropped = texts_of("dropped", 3)

    async def scenario(client):
        first = await hold_the_model(client, model)
        late = await post(client, dropped)  # queued behind the busy model until its timeout
        running = await first  # the text inside the busy model call times out too
        model.free.set()
        await until(lambda: app.state.classifier.batcher.queued == 0, "the queue is empty")
        return late, running, await post(client, ["after the timeout"])

    late, running, after = run(app, scenario)
    for answer in (late, running):
        assert answer.status_code == 504
        assert "no answer within the request timeout of 0.5 s" in answer.json()["detail"]
    check_answer(after, ["after the timeout"])
    assert model.calls == [["the first text"], ["after the timeout"]]


def test_health_answers_while_the_model_is_busy_and_requests_wait():
    model = FakeModel()
    app = create_app(model)

    async def scenario(client):
        first = await hold_the_model(client, model)
        # More waiting requests than a thread pool has threads (anyio's default: 40).
        waiting = [asyncio.ensure_future(post(client, texts_of(f"w{i}", 2))) for i in range(60)]
        await until(lambda: app.state.classifier.batcher.queued == 120, "every request is queued")
        health = await asyncio.wait_for(client.get("/health"), timeout=10)
        busy = not model.free.is_set()
        model.free.set()
        await asyncio.gather(first, *waiting)
        return health, busy

    health, busy = run(app, scenario)
    assert busy and health.status_code == 200 and health.json() == {"status": "ok"}


class RecordingModel:
    """The real model, recording the number of texts of each call."""

    def __init__(self, model):
        self.model, self.encoder, self.config, self.sizes = model, model.encoder, model.config, []
        self.max_seq_length = model.max_seq_length  # the model's own limit, which the service counts against

    def predict(self, texts, batch_size=32):
        self.sizes.append(len(texts))
        return self.model.predict(texts, batch_size=batch_size)


def test_batched_answers_equal_each_request_predicted_alone(shared_model):
    model = RecordingModel(shared_model)
    app = create_app(model, ServiceSettings(max_batch_texts=16, max_wait_ms=500))
    long_text = " ".join(["The committee discussed budgets and marathon training schedules."] * 40)
    requests = [[f"Match report {i}: a late goal wins it.", "Shares fell after the earnings call.",
                 "Flu jabs now at the pharmacy, and I love it!"][: 1 + i % 3] for i in range(11)]
    requests.append(["Short one.", long_text])

    async def scenario(client):
        return await asyncio.gather(*[post(client, texts) for texts in requests])

    answers = run(app, scenario)
    assert len(model.sizes) < len(requests) and max(model.sizes) == 16
    for answer, texts in zip(answers, requests):
        assert answer.status_code == 200, answer.text
        body, alone = answer.json(), shared_model.predict(texts)
        assert body["truncated"] == ([1] if texts[-1] == long_text else [])
        assert [p["topic"] for p in body["predictions"]] == alone["text_class"].tolist()
        assert [p["sentiment"] for p in body["predictions"]] == alone["sentiment"].tolist()
        for task, labels in shared_model.config.tasks.items():
            got = np.array([[p["probabilities"][task][label] for label in labels] for p in body["predictions"]])
            assert np.abs(got - alone[[f"prob_{task}_{label}" for label in labels]].to_numpy()).max() < 1e-5
