"""Rebuild the embedded default model: a breast-cancer risk classifier.

Trains a logistic regression on scikit-learn's bundled Wisconsin diagnostic data (569
tumours, 30 features from digitised fine-needle aspirate images; no download) and writes
it as a hand-built ONNX graph with the standardisation inside, so the model takes the
raw features:

    input (batch, 30) FP32 -> (x - mean) / std -> MatMul W (30, 2) + b -> Softmax
    -> probabilities (batch, 2) FP32, columns [malignant, benign]

    python -m appliance.default_model.build

Its model.json carries a reference profile of the training data (drift monitoring).

Needs scikit-learn (the ``dev`` extra). The serving daemon itself never imports this.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from appliance.errors import ModelLoadError
from appliance.package.golden import make_reference_profile
from appliance.package.manifest import (
    Golden,
    GoldenCase,
    Manifest,
    Provenance,
    TensorData,
    TensorSpec,
    write_manifest,
)
from appliance.runtime import open_session

NAME = "breast_cancer"
VERSION = 1
OUT = Path(__file__).resolve().parent / NAME / str(VERSION)
SEED = 0


def build_graph(
    mean: np.ndarray, std: np.ndarray, coef: np.ndarray, bias: float
) -> onnx.ModelProto:
    # Two-class softmax of [0, z] equals the logistic sigmoid of z: column 1 is P(benign).
    weights = np.zeros((mean.size, 2), dtype=np.float32)
    weights[:, 1] = coef
    inits = [
        numpy_helper.from_array(mean.astype(np.float32), "mean"),
        numpy_helper.from_array(std.astype(np.float32), "std"),
        numpy_helper.from_array(weights, "W"),
        numpy_helper.from_array(np.array([0.0, bias], dtype=np.float32), "b"),
    ]
    nodes = [
        helper.make_node("Sub", ["input", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "W"], ["z"]),
        helper.make_node("Add", ["z", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        NAME,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", mean.size])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="appliance"
    )
    model.ir_version = 10  # ONNX Runtime 1.31 loads IR <= 13; onnx 1.23 writes 14
    model.doc_string = "Breast cancer risk (Wisconsin diagnostic), logistic regression."
    onnx.checker.check_model(model)
    return model


def main() -> None:
    data = load_breast_cancer()
    x = data.data.astype(np.float32)
    y = data.target
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=SEED, stratify=y
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    clf = LogisticRegression(C=1.0, max_iter=5000).fit((x_train - mean) / std, y_train)
    model = build_graph(mean, std, clf.coef_[0], float(clf.intercept_[0]))
    OUT.mkdir(parents=True, exist_ok=True)
    onnx.save(model, OUT / "model.onnx")

    session = open_session(OUT / "model.onnx", ModelLoadError)
    probs = session.run(None, {"input": x_test})[0]
    accuracy = float((probs.argmax(axis=1) == y_test).mean())
    golden_x = x_test[:4]
    golden_y = session.run(None, {"input": golden_x})[0]
    labels = tuple(str(n) for n in data.target_names)
    # Drift is measured against the data the model learnt from.
    profile = make_reference_profile(OUT / "model.onnx", {"input": x_train}, labels=labels)
    manifest = Manifest(
        name=NAME,
        version=VERSION,
        task="classification",
        inputs=(TensorSpec(name="input", datatype="FP32", shape=(-1, 30)),),
        outputs=(TensorSpec(name="probabilities", datatype="FP32", shape=(-1, 2)),),
        labels=labels,
        max_batch_size=64,
        provenance=Provenance(
            source_model="sklearn LogisticRegression on load_breast_cancer (Wisconsin diagnostic)",
            metrics_after={"accuracy": round(accuracy, 4)},
            created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            tool="appliance.default_model.build",
        ),
        reference_profile=profile,
        golden=Golden(
            rtol=1e-4,
            atol=1e-5,
            cases=[
                GoldenCase(
                    inputs={"input": _tensor(golden_x)},
                    outputs={"probabilities": _tensor(golden_y)},
                )
            ],
        ),
    )
    write_manifest(manifest, OUT)
    print(f"wrote {OUT}: held-out accuracy {accuracy:.4f} on {len(y_test)} tumours")


def _tensor(array: np.ndarray) -> TensorData:
    return TensorData(datatype="FP32", shape=array.shape, data=array.ravel().tolist())


if __name__ == "__main__":
    main()
