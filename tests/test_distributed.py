"""Training across processes on this CPU (gloo): the library's ``train`` under DistributedDataParallel,
and ``mtt train`` under ``torchrun``."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed
import torch.multiprocessing

from mtt_helpers import MultiTaskSentenceTransformer, TrainConfig, multitask_frame, set_seed, train
from mtt_helpers.data import load_bundled
from mtt_helpers.encoder import load_encoder

TINY = 48
"""Rows per task of the tiny training set."""


def frames():
    bundled = load_bundled("train").iloc[: 2 * TINY]
    topic = bundled[["text", "topic"]].rename(columns={"topic": "label"}).iloc[:TINY]
    sentiment = bundled[["text", "sentiment"]].rename(columns={"sentiment": "label"}).iloc[TINY:]
    held_out = multitask_frame(bundled=load_bundled("dev").iloc[:30])
    return multitask_frame(topic=topic, sentiment=sentiment), held_out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_in_process(rank: int, processes: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    if processes > 1:
        torch.distributed.init_process_group("gloo", rank=rank, world_size=processes)
    train_frame, held_out = frames()
    set_seed(0)
    model = MultiTaskSentenceTransformer(load_encoder(device="cpu"))
    result = train(model, train_frame, held_out, TrainConfig(trainable_encoder_layers=1, epochs=2, batch_size=16,
                                                            show_progress_bar=False, precision="fp32"))
    top = model.transformer.encoder.layer[5].output.dense.weight.detach().clone()
    results[rank] = {"rows_seen": result.rows_seen, "processes": result.processes, "top": top,
                     "head": model.heads["topic"].classifier.weight.detach().clone(),
                     "scores": result.history["validation_score"].tolist()}
    if processes > 1:
        torch.distributed.destroy_process_group()


def run(processes: int) -> dict:
    manager = torch.multiprocessing.Manager()
    results = manager.dict()
    torch.multiprocessing.spawn(train_in_process, args=(processes, free_port(), results), nprocs=processes, join=True)
    return dict(results)


def test_two_processes_share_each_batch_and_end_with_the_same_weights():
    one, two = run(1), run(2)
    assert one[0]["processes"] == 1 and two[0]["processes"] == two[1]["processes"] == 2
    # Every row of every batch is run once, by one of the two processes.
    assert [a + b for a, b in zip(two[0]["rows_seen"], two[1]["rows_seen"])] == one[0]["rows_seen"]
    assert two[0]["rows_seen"] == two[1]["rows_seen"] == [r // 2 for r in one[0]["rows_seen"]]
    # The gradients are averaged across processes before every step: both end with the same weights and scores.
    assert torch.equal(two[0]["top"], two[1]["top"]) and torch.equal(two[0]["head"], two[1]["head"])
    assert two[0]["scores"] == two[1]["scores"]
    # ... and they trained (the top layer moved), as one process with the same batches does.
    assert not torch.equal(two[0]["top"], one[0]["top"]) or not torch.equal(two[0]["head"], one[0]["head"])


@pytest.fixture()
def data_dir(tmp_path):
    for name, task in (("huffpost_news_category", "topic"), ("tweeteval_sentiment", "sentiment")):
        for split in ("train", "dev"):
            rows = load_bundled("train" if split == "train" else "dev")[["text", task]].rename(columns={task: "label"})
            (tmp_path / "data" / name).mkdir(parents=True, exist_ok=True)
            rows.iloc[: 4 * TINY if split == "train" else 60].to_csv(tmp_path / "data" / name / f"{split}.csv", index=False)
    return tmp_path / "data"


def test_mtt_train_under_torchrun_writes_one_model_from_process_zero(data_dir, tmp_path):
    out = tmp_path / "model"
    command = [str(Path(sys.executable).with_name("torchrun")), "--nproc-per-node", "2", "--master-port",
               str(free_port()), "-m", "mtt", "train", "--data-dir", str(data_dir), "--out", str(out),
               "--max-per-task", str(2 * TINY), "--validation-size", "12", "--layers", "1", "--epochs", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("saved to") == 1 and "2 process(es)" in result.stdout
    record = json.loads((out / "training_args.json").read_text())
    assert record["data"]["processes"] == 2 and record["train_config"]["batch_size"] == 32
    assert MultiTaskSentenceTransformer.load(out).predict(["Goal!"])["text_class"].iloc[0]
