"""Lower-layer token vectors computed once per text, and the top layers run on them.

Fine-tuning the top ``k`` layers leaves the layers below frozen: their output is the same every
epoch, so :func:`cached_hidden_states` computes it once, and :func:`embed_from_layer` runs only
the top layers (then the encoder's own pooling) at each step.
"""

from __future__ import annotations

import torch

from mtt_helpers.model import MultiTaskSentenceTransformer, eval_mode, transformer_of
from mtt_helpers.precision import autocast_context, resolve_precision
from mtt_helpers.training.cache import DEFAULT_CACHE, EmbeddingCache, longest_first, text_key, weights_key


def cached_hidden_states(
    model: MultiTaskSentenceTransformer, texts: list[str], layer: int, batch_size: int = 64,
    precision: str = "auto", cache: EmbeddingCache | None = None,
) -> list[torch.Tensor]:
    """Token vectors after the first ``layer`` transformer layers, one ``(tokens, dim)``
    tensor per text (no padding), computed once per state of those layers, in memory.

    The same encoder pass also fills the sentence-embedding cache.

    Args:
        model: The model.
        texts: Texts to encode.
        layer: 0 is the embedding layer's output, ``n`` the output of the ``n``-th layer.
        batch_size: Texts per encoder pass.
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"`` (see :func:`resolve_precision`).
        cache: Where to keep them; default :data:`DEFAULT_CACHE`.
    """
    cache = cache or DEFAULT_CACHE
    precision = resolve_precision(precision, model.device)
    store = cache.hidden_store((weights_key(model, layer), layer, precision))
    missing = longest_first([t for t in texts if text_key(t) not in store])
    if missing:
        embeddings = cache.embedding_store(f"{weights_key(model)}-{precision}")
        bert = transformer_of(model)
        source = bert.embeddings if layer == 0 else bert.encoder.layer[layer - 1]
        captured = []
        hook = source.register_forward_hook(
            lambda module, inputs, output: captured.append(output[0] if isinstance(output, tuple) else output)
        )
        try:
            with eval_mode(model), torch.no_grad(), autocast_context(precision, model.device):
                for start in range(0, len(missing), batch_size):
                    batch = missing[start : start + batch_size]
                    features = model.tokenize(batch)
                    sentence_embeddings = model.encode_features(features).float().cpu()
                    hidden = captured.pop().float().cpu()
                    mask = features["attention_mask"].bool().cpu()
                    for i, text in enumerate(batch):
                        store[text_key(text)] = hidden[i][mask[i]].clone()  # real tokens, either padding side
                        embeddings[text_key(text)] = sentence_embeddings[i].clone()
        finally:
            hook.remove()
    return [store[text_key(t)] for t in texts]


def embed_from_layer(model: MultiTaskSentenceTransformer, hidden: list[torch.Tensor], layer: int) -> torch.Tensor:
    """Runs transformer layers ``layer..end`` on cached token vectors, then the encoder's own
    pooling (:meth:`MultiTaskSentenceTransformer.pool`): the same embedding the full encoder gives (checked in the tests).

    Runs in the caller's autocast context and grad mode (training calls it with gradients on).
    """
    lengths = torch.tensor([h.shape[0] for h in hidden])
    states = torch.nn.utils.rnn.pad_sequence(hidden, batch_first=True).to(model.device)
    mask = (torch.arange(states.shape[1])[None, :] < lengths[:, None]).to(model.device)
    # Additive attention mask, (batch, 1, 1, tokens): 0 where attended, a huge negative on padding.
    additive = (~mask)[:, None, None, :].to(states.dtype) * torch.finfo(states.dtype).min
    for block in transformer_of(model).encoder.layer[layer:]:
        output = block(states, additive)
        states = output[0] if isinstance(output, tuple) else output  # transformers 4.x returns a tuple
    return model.pool(states, mask.long())
