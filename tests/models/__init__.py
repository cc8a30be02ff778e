"""Small ONNX models built in tests, with onnx.helper (IR 10 for ONNX Runtime 1.31)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def affine_model(path: Path, scale: float = 2.0, features: int = 4) -> Path:
    """y = scale * x + 1, x (batch, features) FP32; output name ``y``."""
    inits = [
        numpy_helper.from_array(np.array(scale, dtype=np.float32), "scale"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
    ]
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "one"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", features])],
        initializer=inits,
    )
    return _save(graph, path)


def slow_model(path: Path, width: int = 256, depth: int = 64) -> Path:
    """``depth`` chained MatMuls with a (width, width) identity: cost grows with rows.

    x (batch, width) FP32 -> y (batch, width), y == x. Lets tests hold a worker busy for
    a predictable while (a few ms per row on a small CPU).
    """
    inits = [numpy_helper.from_array(np.eye(width, dtype=np.float32), "w")]
    nodes = []
    current = "x"
    for i in range(depth):
        out = "y" if i == depth - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [current, "w"], [out]))
        current = out
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        initializer=inits,
    )
    return _save(graph, path)


def two_input_model(path: Path) -> Path:
    """ids (batch, seq) INT64 and mask (batch, seq) INT64 -> total (batch, 1) INT64.

    Shaped like a tokenizer's output, to exercise multi-input validation and batching of
    requests with different sequence lengths.
    """
    nodes = [
        helper.make_node("Mul", ["ids", "mask"], ["kept"]),
        helper.make_node("ReduceSum", ["kept", "axes"], ["total"], keepdims=1),
    ]
    graph = helper.make_graph(
        nodes,
        "two_input",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("total", TensorProto.INT64, ["batch", 1])],
        initializer=[numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    return _save(graph, path)


def fixed_batch_model(path: Path) -> Path:
    """x (3, 2) FP32 -> y (3, 2): no dynamic batch axis, so never batched."""
    graph = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])],
    )
    return _save(graph, path)


#: The tiny encoder's words; anything else is [UNK].
ENCODER_WORDS = [
    "the",
    "patient",
    "has",
    "a",
    "fever",
    "and",
    "cough",
    "chest",
    "pain",
    "no",
    "history",
    "of",
    "diabetes",
    "blood",
    "pressure",
    "is",
    "normal",
    "heart",
    "rate",
    "high",
    "low",
    "left",
    "right",
    "lung",
    "clear",
    "scan",
    "shows",
    "mild",
    "severe",
]
ENCODER_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
ENCODER_DIM = 8


def encoder_tokenizer(path: Path) -> Path:
    """A WordLevel tokenizer over ``ENCODER_WORDS``: ``[CLS] words [SEP]``, lower-cased."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    vocab = {token: i for i, token in enumerate((*ENCODER_SPECIALS, *ENCODER_WORDS))}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return path


def encoder_weights(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(vocab, dim) token table and (dim, dim) projection of the tiny encoder."""
    rng = np.random.default_rng(seed)
    vocab = len(ENCODER_SPECIALS) + len(ENCODER_WORDS)
    table = rng.normal(size=(vocab, ENCODER_DIM)).astype(np.float32)
    projection = rng.normal(size=(ENCODER_DIM, ENCODER_DIM)).astype(np.float32)
    return table, projection


def encoder_model(folder: Path, seed: int = 7) -> Path:
    """A Hugging Face-shaped encoder in ``folder``: ``model.onnx`` and ``tokenizer.json``.

    input_ids, attention_mask, token_type_ids (batch, seq) INT64 -> last_hidden_state
    (batch, seq, 8) = tanh(table[ids] @ projection) * mask (padding rows are zero).
    """
    table, projection = encoder_weights(seed)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["embedded"]),  # (b, s, d)
        helper.make_node("MatMul", ["embedded", "projection"], ["projected"]),
        helper.make_node("Tanh", ["projected"], ["activated"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "last_axis"], ["mask_3d"]),  # (b, s, 1)
        helper.make_node("Mul", ["activated", "mask_3d"], ["masked"]),
        # token_type_ids take part, as in BERT; all zeros, they add nothing.
        helper.make_node("Cast", ["token_type_ids"], ["types_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["types_f", "last_axis"], ["types_3d"]),
        helper.make_node("Add", ["masked", "types_3d"], ["last_hidden_state"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_encoder",
        [
            helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
            for name in ("input_ids", "attention_mask", "token_type_ids")
        ],
        [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, ["batch", "seq", ENCODER_DIM]
            )
        ],
        initializer=[
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(projection, "projection"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "last_axis"),
        ],
    )
    encoder_tokenizer(folder / "tokenizer.json")
    return _save(graph, folder / "model.onnx")


def encoder_reference(
    texts: list[str], pooling: str = "mean", normalize: bool = True, seed: int = 7
) -> np.ndarray:
    """What the tiny encoder's embeddings must be, computed here in numpy, one text at a
    time (no padding): the answer a correct server gives."""
    vocab = {token: i for i, token in enumerate((*ENCODER_SPECIALS, *ENCODER_WORDS))}
    table, projection = encoder_weights(seed)
    rows = []
    for text in texts:
        words = text.lower().replace(",", " , ").replace(".", " . ").split()
        ids = [2, *(vocab.get(w, 1) for w in words), 3]
        hidden = np.tanh(table[ids] @ projection)  # (tokens, dim)
        vector = hidden[0] if pooling == "cls" else hidden.mean(axis=0)
        if normalize:
            vector = vector / np.linalg.norm(vector)
        rows.append(vector)
    return np.asarray(rows, dtype=np.float32)


def row_sum_model(path: Path) -> Path:
    """x (batch, width) FP32 with any width -> total (batch, 1) FP32, the sum of each row.

    Requests of different widths never share a batch (their tensors differ past the
    batch axis), so each one queues on its own.
    """
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=1)],
        "row_sum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "width"])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch", 1])],
        initializer=[numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    return _save(graph, path)


def embedding_model(path: Path, vocab: int = 10, dim: int = 4) -> Path:
    """ids (batch, seq) INT64 -> vectors (batch, seq, dim) FP32: a Gather, as a text
    model's first layer; an id past ``vocab`` makes ONNX Runtime's kernel fail."""
    table = np.arange(vocab * dim, dtype=np.float32).reshape(vocab, dim)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["vectors"], name="embed")],
        "embedding",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("vectors", TensorProto.FLOAT, ["batch", "seq", dim])],
        initializer=[numpy_helper.from_array(table, "table")],
    )
    return _save(graph, path)


def pixel_model(path: Path, width: int = 4) -> Path:
    """pixels (batch, width) UINT8 -> y (batch, width) FP32 = pixels / 255."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["pixels"], ["wide"], to=TensorProto.FLOAT),
            helper.make_node("Div", ["wide", "scale"], ["y"]),
        ],
        "pixels",
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        initializer=[numpy_helper.from_array(np.array(255.0, dtype=np.float32), "scale")],
    )
    return _save(graph, path)


def classifier_model(path: Path, weights: np.ndarray) -> Path:
    """probabilities = softmax(x @ weights): x (batch, features) FP32 -> (batch, classes).

    The tiny classifier of the routing tests: the weights decide its classes and how
    confident it is (scaling them up sharpens the probabilities).
    """
    features, classes = weights.shape
    inits = [numpy_helper.from_array(weights.astype(np.float32), "w")]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])],
        initializer=inits,
    )
    return _save(graph, path)


def softmax_of(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """What ``classifier_model`` answers for ``x``, computed with numpy."""
    logits = x.astype(np.float64) @ weights.astype(np.float64)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
