"""Text embedding on the box: tokenizer, the encoder's input tensors, pooling.

Owns turning texts into the tensors an encoder model takes (``input_ids``,
``attention_mask``, optionally ``token_type_ids``) and the encoder's token outputs back
into one vector per text, as the model's folder states:

- a package of ``task: embedding`` ships ``tokenizer.json`` beside ``model.onnx`` (signed
  with it) and says in ``model.json``'s ``embedding`` section how to pool (``mean`` over
  the attention mask, or the ``cls`` token), whether to L2-normalise, and how many tokens
  a text may have;
- a Triton-style ``<model>/<N>/`` folder with ``tokenizer.json`` beside ``model.onnx``,
  as a Hugging Face export writes it, is pooled the way its sentence-transformers files
  say (``modules.json``, ``1_Pooling/config.json``, ``sentence_bert_config.json``) and,
  without them, mean-pooled over the attention mask and normalised.

The model itself runs through its batcher like any request (``appliance.model``); this
module only prepares and pools. Tokenization uses ``tokenizers`` (Rust), so the serving
core imports neither transformers nor torch. Texts are patient data: nothing here logs
them, and errors name lengths and counts, never contents.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from appliance.errors import InvalidInputError, ModelLoadError
from appliance.package.manifest import Manifest, TensorSpec

if TYPE_CHECKING:
    from tokenizers import Tokenizer

Array = np.ndarray[Any, Any]

TOKENIZER_FILE = "tokenizer.json"
#: Tokens per text when neither the package nor the tokenizer's files say.
DEFAULT_MAX_LENGTH = 512
_IDS, _MASK, _TYPES = "input_ids", "attention_mask", "token_type_ids"
#: Outputs to embed from, in this order: a sentence-transformers export's pooled output,
#: then the encoder's token states (BERT's ``pooler_output`` is not a sentence embedding).
_PREFERRED = ("sentence_embedding", "last_hidden_state", "token_embeddings", "embeddings")
_INT_TYPES = {"INT64": np.int64, "INT32": np.int32}


@dataclass(frozen=True)
class Pooling:
    mode: Literal["mean", "cls"]
    normalize: bool
    max_length: int


@dataclass(frozen=True)
class Encoded:
    """A batch of texts as the encoder takes them."""

    feeds: dict[str, Array]  # name -> (rows, length) int
    mask: Array  # (rows, length) 0/1
    tokens: int  # tokens over all rows, padding excluded (OpenAI's prompt_tokens)


class TextEmbedder:
    """One embedding model's tokenizer and pooling; built when its version loads."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        pooling: Pooling,
        inputs: Sequence[TensorSpec],
        output: TensorSpec,
        pad_id: int,
    ):
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.output = output
        self.pad_id = pad_id
        self._dtypes = {s.name: _INT_TYPES[s.datatype] for s in inputs}
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

    @classmethod
    def load(
        cls,
        folder: Path,
        manifest: Manifest | None,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
    ) -> TextEmbedder:
        """Blocking: read the tokenizer and the pooling settings; check the model fits."""
        from tokenizers import Tokenizer

        _check_inputs(folder, inputs)
        output = _embedding_output(folder, outputs)
        path = folder / TOKENIZER_FILE
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises its own Exception subclass
            raise ModelLoadError(f"{path}: expected a tokenizers JSON file: {exc}") from exc
        pad_id = _pad_id(folder, tokenizer)  # before padding is turned off below
        # Padding and length limits are ours (``encode``, ``_check_lengths``).
        tokenizer.no_padding()
        tokenizer.no_truncation()
        return cls(tokenizer, _pooling(folder, manifest, inputs), inputs, output, pad_id)

    @property
    def dimensions(self) -> int | None:
        """Length of one embedding, when the model's output shape fixes it."""
        size = self.output.shape[-1]
        return size if size > 0 else None

    # -- texts in --------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (special tokens added); refuses empty or over-long texts."""
        for i, text in enumerate(texts):
            if not text:
                raise InvalidInputError(f"input[{i}]: expected a non-empty text, got ''")
        ids = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        self._check_lengths(ids)
        return ids

    def check_ids(self, ids: Sequence[Sequence[int]]) -> list[list[int]]:
        """Token ids a client sent instead of texts, checked against the vocabulary."""
        for i, row in enumerate(ids):
            if not row:
                raise InvalidInputError(f"input[{i}]: expected at least one token id, got none")
            bad = next((t for t in row if not 0 <= t < self.vocab_size), None)
            if bad is not None:
                raise InvalidInputError(
                    f"input[{i}]: token id {bad} is outside the vocabulary (0 to "
                    f"{self.vocab_size - 1})"
                )
        rows = [list(r) for r in ids]
        self._check_lengths(rows)
        return rows

    def _check_lengths(self, ids: Sequence[Sequence[int]]) -> None:
        limit = self.pooling.max_length
        for i, row in enumerate(ids):
            if len(row) > limit:
                raise InvalidInputError(
                    f"input[{i}]: {len(row)} tokens, more than the {limit} this model takes; "
                    "shorten or split the text"
                )

    def encode(self, ids: Sequence[Sequence[int]]) -> Encoded:
        """Pad a batch of token id rows to its longest row: the encoder's feeds."""
        length = max(len(r) for r in ids)
        tokens = np.full((len(ids), length), self.pad_id, dtype=np.int64)  # (rows, length)
        mask = np.zeros((len(ids), length), dtype=np.int64)
        for i, row in enumerate(ids):
            tokens[i, : len(row)] = row
            mask[i, : len(row)] = 1
        values = {_IDS: tokens, _MASK: mask, _TYPES: np.zeros_like(tokens)}
        feeds = {
            name: values[name].astype(dtype, copy=False) for name, dtype in self._dtypes.items()
        }
        return Encoded(feeds, mask, int(mask.sum()))

    # -- vectors out -----------------------------------------------------------

    def pool(self, output: Array, mask: Array) -> Array:
        """(rows, dim) float32 embeddings from the encoder's output and the mask."""
        values = output.astype(np.float32, copy=False)
        if values.ndim == 2:  # the model pools itself
            pooled = values
        elif self.pooling.mode == "cls":
            pooled = values[:, 0]
        else:  # mean over the tokens the mask keeps: (rows, length, dim) -> (rows, dim)
            weights = mask.astype(np.float32)[:, :, None]
            counts = np.maximum(weights.sum(axis=1), 1e-9)
            pooled = (values * weights).sum(axis=1) / counts
        if self.pooling.normalize:
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            pooled = pooled / np.maximum(norms, 1e-12)
        return np.ascontiguousarray(pooled, dtype=np.float32)


def _check_inputs(folder: Path, inputs: Sequence[TensorSpec]) -> None:
    names = {s.name: s for s in inputs}
    described = [(s.name, s.datatype) for s in inputs]
    if _IDS not in names or _MASK not in names or not set(names) <= {_IDS, _MASK, _TYPES}:
        raise ModelLoadError(
            f"{folder}: an embedding model takes {_IDS} and {_MASK} (and optionally "
            f"{_TYPES}); this one takes {described}"
        )
    for spec in inputs:
        if spec.datatype not in _INT_TYPES or len(spec.shape) != 2:
            raise ModelLoadError(
                f"{folder}: embedding input {spec.name!r}: expected INT64 or INT32 of shape "
                f"(batch, tokens), got {spec.datatype} {list(spec.shape)}"
            )


def _embedding_output(folder: Path, outputs: Sequence[TensorSpec]) -> TensorSpec:
    floats = [s for s in outputs if s.datatype in ("FP32", "FP16")]
    by_name = {s.name: s for s in floats}
    for name in _PREFERRED:
        if name in by_name and len(by_name[name].shape) in (2, 3):
            return by_name[name]
    for rank in (3, 2):
        found = next((s for s in floats if len(s.shape) == rank), None)
        if found is not None:
            return found
    raise ModelLoadError(
        f"{folder}: an embedding model needs a float output of shape (batch, tokens, dim) "
        f"or (batch, dim); this one has {[(s.name, s.datatype, list(s.shape)) for s in outputs]}"
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: expected a JSON object, could not read it: {exc}") from exc
    if not isinstance(value, dict):
        raise ModelLoadError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def _pooling(folder: Path, manifest: Manifest | None, inputs: Sequence[TensorSpec]) -> Pooling:
    """The package's ``embedding`` section, else the folder's sentence-transformers
    files, else mean pooling, normalised."""
    max_length = _max_length(folder, inputs)
    if manifest is not None:
        section = manifest.embedding
        if section is None:
            return Pooling("mean", True, max_length)
        return Pooling(section.pooling, section.normalize, section.max_length or max_length)
    modules = _read_json_list(folder / "modules.json")
    if modules is None:
        return Pooling("mean", True, max_length)
    types = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in modules}
    mode: Literal["mean", "cls"] = "mean"
    pooling_module = types.get("Pooling")
    if pooling_module is not None:
        config = _read_json(folder / str(pooling_module.get("path", "")) / "config.json") or {}
        if config.get("pooling_mode_cls_token"):
            mode = "cls"
        elif not config.get("pooling_mode_mean_tokens", True):
            raise ModelLoadError(
                f"{folder}: pooling {sorted(k for k, v in config.items() if v is True)} is not "
                "served; expected mean or cls token pooling"
            )
    return Pooling(mode, "Normalize" in types, max_length)


def _read_json_list(path: Path) -> list[dict[str, Any]] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: expected a JSON list, could not read it: {exc}") from exc
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise ModelLoadError(f"{path}: expected a JSON list of modules")
    return value


def _max_length(folder: Path, inputs: Sequence[TensorSpec]) -> int:
    fixed = next((s.shape[1] for s in inputs if s.name == _IDS and s.shape[1] > 0), None)
    if fixed is not None:
        return int(fixed)
    sentence = _read_json(folder / "sentence_bert_config.json") or {}
    tokenizer = _read_json(folder / "tokenizer_config.json") or {}
    for value in (sentence.get("max_seq_length"), tokenizer.get("model_max_length")):
        # Tokenizers without a limit write a huge sentinel (1e30): not a real limit.
        if isinstance(value, int | float) and 0 < value < 1_000_000:
            return int(value)
    return DEFAULT_MAX_LENGTH


def _pad_id(folder: Path, tokenizer: Tokenizer) -> int:
    padding = tokenizer.padding
    if padding is not None:
        return int(padding["pad_id"])
    config = _read_json(folder / "tokenizer_config.json") or {}
    pad = config.get("pad_token")
    if isinstance(pad, dict):
        pad = pad.get("content")
    for token in (pad, "[PAD]", "<pad>"):
        if isinstance(token, str) and (found := tokenizer.token_to_id(token)) is not None:
            return int(found)
    return 0  # masked out either way


__all__ = ["DEFAULT_MAX_LENGTH", "TOKENIZER_FILE", "Encoded", "Pooling", "TextEmbedder"]
