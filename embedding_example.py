"""Encode three sentences with all-MiniLM-L6-v2 and compare them by cosine similarity.

Run: python embedding_example.py
"""

import pandas as pd

from mtt_helpers import embed, load_encoder, quiet, similarity_table

SENTENCES = [
    "The dog ran across the grass.",
    "Why is the sky blue?",
    "The cat jumped into the weeds.",
]


def main() -> None:
    quiet()
    encoder = load_encoder()
    embeddings = embed(encoder, SENTENCES)
    print(f"Embeddings size: {embeddings.shape}")
    with pd.option_context("display.width", 120, "display.precision", 6):
        print(similarity_table(SENTENCES, embeddings))


if __name__ == "__main__":
    main()
