"""The bodies of ``POST /predict``: the request, checked before the model sees it, and the answer."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator


def _is_utf8_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class PredictRequest(BaseModel):
    """Body of ``POST /predict``."""

    model_config = ConfigDict(extra="forbid")

    texts: list[StrictStr] = Field(min_length=1, description="Sentences to classify (non-empty strings).")

    @field_validator("texts")
    @classmethod
    def _no_blank_texts(cls, texts: list[str]) -> list[str]:
        blank = [i for i, text in enumerate(texts) if not text.strip()]
        if blank:
            raise ValueError(f"texts at indices {blank[:20]} are empty or whitespace only")
        # JSON may carry lone surrogates ("\\ud800"), which no tokenizer or UTF-8 answer can hold.
        unencodable = [i for i, text in enumerate(texts) if not _is_utf8_encodable(text)]
        if unencodable:
            raise ValueError(f"texts at indices {unencodable[:20]} hold lone UTF-16 surrogates (not valid Unicode text)")
        return texts


class Prediction(BaseModel):
    """One text's labels and class probabilities, keyed by task name."""

    model_config = ConfigDict(extra="allow")

    text: str
    probabilities: dict[str, dict[str, float]]


class PredictResponse(BaseModel):
    """Body of a 200 answer to ``POST /predict``."""

    predictions: list[Prediction]
    truncated: list[int] = Field(description="Indices of texts cut at the encoder's token limit.")
