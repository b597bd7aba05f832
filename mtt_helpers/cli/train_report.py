"""The Markdown summary ``mtt train --report`` writes: the command, the machine, the data, the recipe and the scores."""

from __future__ import annotations


def run_report(argv, train_parts, validation_parts, config, result, metrics, max_seq_length) -> str:
    """A Markdown summary of one training run (for the README: generated, never typed).

    Says which split picked the epoch (the validation slice) and which scored it (dev, once,
    on the saved model reloaded at ``max_seq_length`` tokens in fp32).
    """
    import os
    import platform

    import pandas as pd
    import torch

    from mtt_helpers.reporting import markdown_table
    from mtt_helpers.training import MAIN_METRIC

    row = pd.DataFrame([{
        "topic rows": len(train_parts["topic"]), "sentiment rows": len(train_parts["sentiment"]),
        "encoder layers": config.trainable_encoder_layers, "epochs": config.epochs, "best epoch": result.best_epoch,
        "precision": result.precision, "minutes": result.seconds / 60,
        "dev topic macro-F1": metrics["topic"][MAIN_METRIC["topic"]],
        "dev sentiment macro-recall": metrics["sentiment"][MAIN_METRIC["sentiment"]],
    }]).set_index("topic rows")
    command = "mtt " + " ".join(str(a) for a in argv)
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    selection = (f"The epoch was picked on a validation slice carved from the training rows "
                 f"({len(validation_parts['topic'])} topic + {len(validation_parts['sentiment'])} sentiment, "
                 f"seed {config.seed}); dev was scored once, on the kept epoch, with the saved model reloaded "
                 f"({max_seq_length} tokens, fp32).")
    return (f"`{command}` on {machine}:\n\n"
            + markdown_table(row, formats={"minutes": "{:.1f}", "dev topic macro-F1": "{:.3f}",
                                            "dev sentiment macro-recall": "{:.3f}"}) + "\n\n" + selection + "\n")
