"""Update encodings: round trips within their error bound, and int8's byte savings."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from federated._records import to_record
from federated._training import build_model, get_weights
from federated.encoding import INT8_KEY, SCALE_KEY, decode_update, encode_update
from federated.errors import UpdateFormatError
from federated.settings import Encoding, RunSettings

finite = st.floats(-10, 10, allow_nan=False, width=32)


@settings(max_examples=50, deadline=None)
@given(
    g=hnp.arrays(np.float32, st.tuples(st.integers(1, 8), st.integers(1, 8)), elements=finite),
    noise=st.floats(1e-4, 1.0),
)
def test_int8_round_trip_error_is_at_most_half_a_step(g: np.ndarray, noise: float) -> None:
    rng = np.random.default_rng(0)
    local = {"w": g + rng.normal(0, noise, g.shape).astype(np.float32), "b": g[0].copy()}
    global_ = {"w": g, "b": g[0]}
    decoded = decode_update(global_, encode_update(global_, local, Encoding.INT8))
    step = np.abs(local["w"] - g).max() / 127
    assert np.abs(decoded["w"] - local["w"]).max() <= step / 2 + 1e-5
    np.testing.assert_array_equal(decoded["b"], local["b"])  # a tensor that did not move


@pytest.mark.parametrize("encoding", list(Encoding))
def test_round_trip_keeps_names_shapes_and_dtypes(encoding: Encoding) -> None:
    model = build_model(RunSettings())
    global_ = get_weights(model)
    local = {k: v + np.float32(0.01) for k, v in global_.items()}
    decoded = decode_update(global_, encode_update(global_, local, encoding))
    assert list(decoded) == list(global_)
    for name, value in decoded.items():
        assert value.shape == global_[name].shape and value.dtype == global_[name].dtype
        np.testing.assert_allclose(value, local[name], atol=1e-3)


def test_int8_sends_at_least_3_5_times_fewer_bytes_than_float32() -> None:
    model = build_model(RunSettings())
    global_ = get_weights(model)
    local = {
        k: v + np.random.default_rng(1).normal(0, 0.01, v.shape).astype(v.dtype)
        for k, v in global_.items()
    }
    sizes = {e: to_record(encode_update(global_, local, e)).count_bytes() for e in Encoding}
    assert sizes[Encoding.FLOAT32] / sizes[Encoding.INT8] >= 3.5
    assert sizes[Encoding.FLOAT32] / sizes[Encoding.FP16] >= 1.9


def test_truncated_int8_update_is_refused() -> None:
    global_ = get_weights(build_model(RunSettings()))
    encoded = encode_update(global_, global_, Encoding.INT8)
    encoded[INT8_KEY] = encoded[INT8_KEY][:-1]
    with pytest.raises(UpdateFormatError, match=r"expected \d+ values, got shape"):
        decode_update(global_, encoded)


def test_mixed_keys_are_refused() -> None:
    global_ = {"w": np.zeros(3, np.float32)}
    with pytest.raises(UpdateFormatError, match="int8 update: expected arrays"):
        decode_update(global_, {INT8_KEY: np.zeros(3, np.int8), "w": np.zeros(3, np.float32)})
    with pytest.raises(UpdateFormatError, match="float32 update: expected tensors"):
        decode_update(global_, {"v": np.zeros(3, np.float32)})
    with pytest.raises(UpdateFormatError, match="expected 1 finite scales"):
        decode_update(
            global_, {INT8_KEY: np.zeros(3, np.int8), SCALE_KEY: np.array([np.nan], np.float32)}
        )


def test_records_round_trip() -> None:
    record = to_record({"a": np.arange(3, dtype=np.int8)})
    assert isinstance(record, ArrayRecord)
    assert record["a"].numpy().tolist() == [0, 1, 2]
