"""Why SetFit under bf16 autocast can label every tweet the same: one SetFit run per precision, taken apart.

    MTT_DATA_DIR=/path/to/data python benchmarks/setfit_bf16.py [--n 32] [--seed 0] [--max-steps -1]

Trains SetFit on chapter 04's labelled sample (the same calls draw it) once in fp32 and once under bf16
autocast, as ``mtt_helpers.lowres.train_setfit`` runs it, and for each run prints:

- dev macro-recall and the share of each predicted label on the dev tweets;
- the tuned body's dev embeddings, computed in fp32: their mean pairwise cosine (near 1 means the body
  collapsed every text onto one direction) and the mean cosine between class centroids;
- the same body with a new logistic-regression head fitted in fp32 on fp32 embeddings of the labelled
  sample: if this recovers the fp32 run's recall, the body is sound and the collapse is in the head or in
  the embeddings it was fitted on;
- the fitted head's largest coefficient and its intercepts.

On a CPU without native bf16 (no AVX512-BF16 or AMX) bf16 is emulated and about ten times slower than
fp32; at n = 128 and SetFit's default 634 steps a bf16 run takes about an hour there.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=32, choices=(32, 128, 512), help="labelled tweets (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="chapter 04's seed (default 0)")
    parser.add_argument("--max-steps", type=int, default=-1, help="pair steps (default -1: SetFit's default)")
    parser.add_argument("--dev", type=int, default=1000, help="dev tweets scored (default 1000)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    args = parser.parse_args()

    from sklearn.linear_model import LogisticRegression

    from mtt.data import locate_data
    from mtt_core.labels import SENTIMENT_LABELS
    from mtt_helpers import load_task_data, quiet, stratified_sample
    from mtt_helpers.lowres import setfit_default_steps, train_setfit
    from mtt_helpers.training import task_metrics

    import setfit  # noqa: F401  (turns its logging up on import: before quiet() turns it down)

    quiet()
    found = locate_data()
    if found.folder is None:
        raise SystemExit(f"{found.origin} This diagnosis describes the public datasets.")
    tweets = load_task_data("train", found.folder).sentiment
    sample = stratified_sample(stratified_sample(tweets, 512, seed=args.seed), args.n, seed=args.seed)
    dev = stratified_sample(load_task_data("dev", found.folder).sentiment, args.dev, seed=0)
    texts, labels = sample["text"].tolist(), sample["label"].tolist()
    print(f"n = {args.n}, seed {args.seed}: SetFit's default {setfit_default_steps(labels)} pair steps; "
          f"{len(dev)} dev tweets", flush=True)

    for precision in args.precisions:
        start = time.perf_counter()
        run = train_setfit(texts, labels, args.seed, max_steps=args.max_steps, precision=precision)
        predicted = run.predict_labels(dev["text"].tolist())
        body = run.model.model_body
        dev_vectors = np.asarray(body.encode(dev["text"].tolist(), batch_size=64))  # fp32: no autocast here
        unit = dev_vectors / np.linalg.norm(dev_vectors, axis=1, keepdims=True)
        cosines = unit @ unit.T
        mean_cosine = cosines[np.triu_indices(len(unit), k=1)].mean()
        centroids = np.stack([unit[dev["label"].to_numpy() == label].mean(axis=0) for label in SENTIMENT_LABELS])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        centroid_cosine = (centroids @ centroids.T)[np.triu_indices(len(centroids), k=1)].mean()
        refit = LogisticRegression(max_iter=1000).fit(np.asarray(body.encode(texts, batch_size=64)), labels)
        head = run.model.model_head
        shares = {label: float(np.mean(np.asarray(predicted) == label)) for label in SENTIMENT_LABELS}
        print(f"\n{precision}: {run.steps} steps, {time.perf_counter() - start:.0f} s", flush=True)
        print(f"  dev macro-recall {task_metrics(dev['label'], predicted)['macro_recall']:.3f}; predicted shares "
              + ", ".join(f"{label} {share:.2f}" for label, share in shares.items()))
        print(f"  tuned body, dev embeddings in fp32: mean pairwise cosine {mean_cosine:.3f}, "
              f"mean cosine between class centroids {centroid_cosine:.3f}")
        print(f"  the same body, a head refitted in fp32: dev macro-recall "
              f"{task_metrics(dev['label'], refit.predict(dev_vectors))['macro_recall']:.3f}")
        print(f"  SetFit's head: largest |coefficient| {np.abs(head.coef_).max():.3g}, intercepts "
              + ", ".join(f"{c} {b:.3g}" for c, b in zip(head.classes_, head.intercept_)), flush=True)


if __name__ == "__main__":
    main()
