"""Int8 against fp32: label agreement, batch dependence and speed of dynamic int8, static int8 and the cascade.

    python benchmarks/int8_agreement.py ONNX_DIR --data-dir ../shared/data

ONNX_DIR is an export of a trained model (``mtt export MODEL_DIR ONNX_DIR``); its ``model.onnx`` is
the reference. The int8 graphs are written to a temporary directory; nothing is written beside
ONNX_DIR. Static graphs are calibrated on the bundled dataset (``quantize_int8``'s default).

1. **Choosing, on validation texts** (TweetEval dev rows 1,001-2,000 and HuffPost dev rows 1,001
   to the end): every calibration method with per-channel and per-tensor weights. The chosen
   graph has the highest agreement on the worse task (ties: the higher embedding cosine to fp32).
   On the same texts, the cascade's trade-off (``cascade_curve``) over margin thresholds.
2. **Reporting, on the first 1,000 TweetEval dev tweets + the first 1,000 HuffPost dev
   headlines**: agreement with fp32 labels per task (on all 2,000 texts, and on the texts of
   that task's dataset), labels and logits that change between a text alone and the text
   inside its batch (first 200 texts), and speed (sentences/s, batches of 32, 2 threads, fastest of
   interleaved rounds) for fp32, dynamic int8, the chosen static int8 and the cascade on it.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mtt_core.model_files import INT8_FILE
from mtt_core.onnx_runtime import DEFAULT_MARGIN_THRESHOLD, CascadePredictor, OnnxPredictor, cascade_curve
from mtt_helpers import load_external, quiet
from mtt_helpers.measure import fastest_times, markdown_table
from mtt_helpers.onnx import CALIBRATION_METHODS, quantize_dynamic_int8, quantize_int8

REPORTED = 1000
"""Rows of each dev set that are reported on; the rows after them are the validation texts."""
ALONE_CHECKED = 200
"""Reported texts predicted one at a time to count labels that depend on the batch."""
THRESHOLDS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
THREADS, BATCH = 2, 32
TASKS = ("topic", "sentiment")


def dev_texts(data_dir: Path) -> dict[str, tuple[list[str], list[str]]]:
    """``{dataset: (reported texts, validation texts)}``."""
    splits = {}
    for name in ("tweeteval_sentiment", "huffpost_news_category"):
        texts = load_external(name, "dev", data_dir)["text"].tolist()
        splits[name] = (texts[:REPORTED], texts[REPORTED:])
    return splits


def agreement(logits: dict, reference: dict, rows: dict[str, np.ndarray]) -> dict[str, float]:
    """Share of texts whose label equals the fp32 label, per task on all texts and on ``rows[task]``."""
    result = {}
    for task in TASKS:
        same = logits[task].argmax(axis=1) == reference[task].argmax(axis=1)
        result[f"{task} agreement"] = same.mean()
        result[f"{task} agreement, own texts"] = same[rows[task]].mean()
    return result


def alone_vs_batched(predictor, texts: list[str]) -> tuple[int, float]:
    """Texts whose label (in any task) differs between predicting it alone and inside ``texts``,
    and the largest change of a logit."""
    batched = predictor.predict_logits(texts, BATCH)
    changed, largest = 0, 0.0
    for i, text in enumerate(texts):
        alone = predictor.predict_logits([text], 1)
        changed += any(alone[task][0].argmax() != batched[task][i].argmax() for task in TASKS)
        largest = max(largest, *(float(np.abs(alone[task][0] - batched[task][i]).max()) for task in TASKS))
    return changed, largest


def choose_static(work: Path, texts: list[str], fp32: dict) -> tuple[dict, pd.DataFrame]:
    """Quantises with every method x weight scaling; returns the best graph's settings and the table."""
    rows = []
    for method in CALIBRATION_METHODS:
        for per_channel in (True, False):
            name = f"static-{method}-{'channel' if per_channel else 'tensor'}.onnx"
            start = time.perf_counter()
            quantize_int8(work / "model.onnx", work / name, method=method, per_channel=per_channel)
            seconds = time.perf_counter() - start
            logits = OnnxPredictor(work, onnx_file=name, intra_op_num_threads=THREADS).predict_logits(texts, BATCH)
            row = {"graph": name, "method": method, "per_channel": per_channel, **{f"{task} agreement": (logits[task].argmax(1) == fp32[task].argmax(1)).mean()
                                     for task in TASKS}}
            row["embedding cosine"] = (logits["embedding"] * fp32["embedding"]).sum(axis=1).mean()
            row["calibration s"] = seconds
            rows.append(row)
            print(f"  {name}: quantised in {seconds:.0f} s", flush=True)
    table = pd.DataFrame(rows).set_index("graph")
    worse = table[[f"{task} agreement" for task in TASKS]].min(axis=1)
    best = table.assign(worse=worse).sort_values(["worse", "embedding cosine"], ascending=False).iloc[0]
    return {"method": best["method"], "per_channel": bool(best["per_channel"])}, table


def report_table(predictors: dict, texts: list[str], reference: dict, rows: dict, rounds: int) -> pd.DataFrame:
    """One row per predictor: agreement, share re-run, batch dependence and speed on ``texts``."""
    table = []
    for name, predictor in predictors.items():
        row = {"graph": name, **agreement(predictor.predict_logits(texts, BATCH), reference, rows)}
        row["share re-run in fp32"] = getattr(predictor, "last_rerun_share", None)  # before the next call
        changed, largest = alone_vs_batched(predictor, texts[:ALONE_CHECKED])
        row[f"labels changed alone vs batched (of {ALONE_CHECKED})"] = changed
        row["largest logit change alone vs batched"] = largest
        table.append(row)
    chunks = [texts[start : start + 200] for start in range(0, len(texts), 200)]
    seconds = fastest_times({name: (lambda chunk, p=p: p.predict_logits(chunk, BATCH), chunks)
                             for name, p in predictors.items()}, repeats=rounds)
    report = pd.DataFrame(table).set_index("graph")
    report["sentences/s"] = [len(texts) / seconds[name] for name in report.index]
    return report


def print_curve(title: str, predictor: OnnxPredictor, texts: list[str], fp32: dict) -> None:
    """The cascade's trade-off on ``texts`` for :data:`THRESHOLDS`."""
    logits = predictor.predict_logits(texts, BATCH)
    curve = cascade_curve({t: logits[t] for t in TASKS}, {t: fp32[t] for t in TASKS}, THRESHOLDS)
    print(f"\n{title}:\n")
    print(markdown_table(curve.set_index("threshold"), digits=4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("onnx_dir", type=Path, help="an export (mtt export) of a trained model")
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding the datasets' subfolders")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds; the fastest counts (default 3)")
    parser.add_argument("--defaults-only", action="store_true",
                        help="skip the choice: report quantize_int8's default graph (much faster)")
    args = parser.parse_args()
    quiet()
    splits = dev_texts(args.data_dir)
    tweets, headlines = splits["tweeteval_sentiment"], splits["huffpost_news_category"]
    with tempfile.TemporaryDirectory(prefix="int8_agreement_") as scratch:
        work = Path(scratch)
        for item in args.onnx_dir.iterdir():
            if item.is_file() and (item.suffix != ".onnx" or item.name == "model.onnx"):  # the manifest too
                shutil.copy2(item, work / item.name)
        fp32 = OnnxPredictor(work, intra_op_num_threads=THREADS)

        validation = tweets[1] + headlines[1]
        print(f"validation: {len(tweets[1])} tweets + {len(headlines[1])} headlines", flush=True)
        fp32_validation = fp32.predict_logits(validation, BATCH)
        chosen = {}  # quantize_int8's defaults
        if not args.defaults_only:
            chosen, candidates = choose_static(work, validation, fp32_validation)
            print("\nStatic int8 on the validation texts (agreement with fp32 labels on all of them):\n")
            print(markdown_table(candidates, digits=4, formats={"calibration s": "{:.0f}"}))
        quantize_int8(work / "model.onnx", **chosen)  # the chosen graph as the export's int8 graph, for the cascade
        print(f"\nstatic graph: {chosen or 'the defaults'}")
        static_predictor = OnnxPredictor(work, onnx_file=INT8_FILE, intra_op_num_threads=THREADS)
        print_curve("Cascade on the static graph, validation texts", static_predictor, validation, fp32_validation)

        quantize_dynamic_int8(work / "model.onnx", work / "dynamic.onnx")
        predictors = {
            "fp32": fp32,
            "dynamic int8": OnnxPredictor(work, onnx_file="dynamic.onnx", intra_op_num_threads=THREADS),
            "static int8": static_predictor,
            f"int8-safe (static, margin {DEFAULT_MARGIN_THRESHOLD})": CascadePredictor(
                work, intra_op_num_threads=THREADS),
        }
        texts = tweets[0] + headlines[0]
        rows = {"topic": np.arange(len(texts)) >= len(tweets[0]), "sentiment": np.arange(len(texts)) < len(tweets[0])}
        reference = fp32.predict_logits(texts, BATCH)
        print_curve("Cascade on the static graph, reported texts", static_predictor, texts, reference)
        report = report_table(predictors, texts, reference, rows, args.rounds)
        print(f"\n{len(tweets[0])} tweets + {len(headlines[0])} headlines; agreement with ONNX fp32 labels; "
              f"{THREADS} threads, batches of {BATCH}, fastest of {args.rounds} rounds:\n")
        print(markdown_table(report, digits=4, formats={"sentences/s": "{:.1f}",
                                                        "largest logit change alone vs batched": "{:.1e}"}))


if __name__ == "__main__":
    main()
