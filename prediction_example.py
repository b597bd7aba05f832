"""Classify sentences by topic and sentiment with one shared encoder and two heads.

The heads are randomly initialised (seeded), so the labels below are NOT meaningful:
this script shows the shape of the multi-task output. Notebook 03 trains the heads.

Run: python prediction_example.py
"""

from mtt_helpers import MultiTaskSentenceTransformer, quiet, set_seed

SENTENCES = [
    "The team secured a thrilling victory in the final minutes of the match.",
    "New research shows that regular exercise improves heart health.",
    "The latest smartphone release disappointed many users with its short battery life.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "The university announced free tuition for students from low-income families.",
    "We spent a relaxing weekend hiking in the mountains.",
]


def main() -> None:
    quiet()
    set_seed(42)  # the heads' random weights depend on this seed
    model = MultiTaskSentenceTransformer()
    predictions = model.predict(SENTENCES)
    print("Heads are UNTRAINED (random weights, seed 42): these labels are not real predictions.\n")
    print(predictions[["sentence", "text_class", "sentiment"]].to_string())


if __name__ == "__main__":
    main()
