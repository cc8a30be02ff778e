"""Rebuild the embedded default models: a breast-cancer risk classifier and a small
clinical-text language model.

    python -m appliance.default_model.build [breast_cancer] [clinical_lm]

**breast_cancer.** Trains a logistic regression on scikit-learn's bundled Wisconsin
diagnostic data (569 tumours, 30 features from digitised fine-needle aspirate images; no
download) and writes it as a hand-built ONNX graph with the standardisation inside, so
the model takes the raw features:

    input (batch, 30) FP32 -> (x - mean) / std -> MatMul W (30, 2) + b -> Softmax
    -> probabilities (batch, 2) FP32, columns [malignant, benign]

Its model.json carries a reference profile of the training data (drift monitoring).

**clinical_lm.** A Llama of ``lm_spec()``'s shape trained by ``compress.lm`` on the
synthetic clinical corpus (``compress.corpus``: templated sentences, no patient data),
built to int4 for the CPU by onnxruntime-genai's model builder, with golden prompts and
their greedy continuations in its ``model.json``. It writes clinical-style sentences,
nothing more: a demonstration of the generative path, not a clinical tool. On one box
and one set of library versions the rebuild is bit-identical (fixed seeds, two torch
threads, no timestamp in its manifest); other CPUs or torch builds may round the
training's floats differently.

Needs scikit-learn, torch and transformers (the ``dev`` extra). The serving daemon
itself never imports this.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from appliance.errors import ModelLoadError
from appliance.package.generative import (
    DEFAULT_GOLDEN_TOKENS,
    DEFAULT_PROMPTS,
    GENERATIVE_INPUTS,
    GENERATIVE_OUTPUTS,
    make_generation_golden,
)
from appliance.package.golden import make_reference_profile
from appliance.package.manifest import (
    TEXT_GENERATION,
    GenerationCase,
    Golden,
    GoldenCase,
    Manifest,
    Provenance,
    TensorData,
    TensorSpec,
    write_manifest,
)
from appliance.runtime import open_session

if TYPE_CHECKING:
    from compress.lm import LlamaSpec

HERE = Path(__file__).resolve().parent
NAME = "breast_cancer"
VERSION = 1
OUT = HERE / NAME / str(VERSION)
SEED = 0

LM_NAME = "clinical_lm"
LM_VERSION = 1
LM_OUT = HERE / LM_NAME / str(LM_VERSION)


#: Big enough to write readable clinical-style sentences after a few minutes of training
#: on two CPU cores, small enough (about 3 MB at int4) to ship inside the package.
def lm_spec() -> LlamaSpec:
    """The embedded LM's shape and training (``compress`` is imported here, not at module
    level: the serving box installs only the lean core)."""
    from compress.lm import LlamaSpec

    return LlamaSpec(
        hidden=128,
        layers=3,
        heads=4,
        kv_heads=2,
        intermediate=384,
        vocab=768,
        context=256,
        steps=300,
        batch=16,
        seq=64,
        lr=3e-3,
        sentences=6000,
        seed=SEED,
    )


#: Training threads, fixed: a float sum's rounding depends on how it is split.
LM_THREADS = 2


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


def build_breast_cancer() -> None:
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


def build_clinical_lm() -> None:
    import torch

    from compress.lm import GenaiBuild, build_genai, build_llama

    torch.set_num_threads(LM_THREADS)
    spec = lm_spec()
    with tempfile.TemporaryDirectory(prefix="clinical-lm-") as tmp:
        hf = build_llama(spec, Path(tmp) / "hf")
        loss = _heldout_loss(hf)
        genai = build_genai(hf, Path(tmp) / "genai", GenaiBuild(precision="int4", provider="cpu"))
        golden = make_generation_golden(genai, DEFAULT_PROMPTS, DEFAULT_GOLDEN_TOKENS)
        if LM_OUT.exists():
            shutil.rmtree(LM_OUT)
        shutil.copytree(genai, LM_OUT)
    manifest = Manifest(
        name=LM_NAME,
        version=LM_VERSION,
        task=TEXT_GENERATION,
        inputs=GENERATIVE_INPUTS,
        outputs=GENERATIVE_OUTPUTS,
        max_batch_size=0,  # the engine batches step by step
        provenance=Provenance(
            source_model="LlamaForCausalLM trained by compress.lm on compress.corpus "
            "(synthetic clinical-style sentences)",
            recipe={"spec": spec.recorded(), "build": {"precision": "int4", "provider": "cpu"}},
            metrics_after={"heldout_loss_fp32": round(loss, 4)},
            tool="appliance.default_model.build",  # no timestamp: rebuilds are bit-identical
        ),
        generation_golden=golden,
    )
    write_manifest(manifest, LM_OUT)
    size = sum(p.stat().st_size for p in LM_OUT.iterdir())
    print(f"wrote {LM_OUT}: {size / 1e6:.1f} MB, held-out loss {loss:.3f} (fp32, nats/token)")
    _show_golden(golden.cases)


def _show_golden(cases: list[GenerationCase]) -> None:
    import onnxruntime_genai as og  # type: ignore[import-untyped]

    tokenizer = og.Tokenizer(og.Model(str(LM_OUT)))
    for case in cases:
        print(f"  {case.prompt!r} -> {tokenizer.decode(list(case.token_ids))!r}")


def _heldout_loss(hf: Path) -> float:
    """Next-token loss of the trained fp32 model on sentences of unseen templates."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from compress.lm.tiny import corpus

    _, heldout = corpus(lm_spec())
    tokenizer = AutoTokenizer.from_pretrained(hf)
    model = LlamaForCausalLM.from_pretrained(hf)
    model.eval()  # type: ignore[no-untyped-call]
    total, count = 0.0, 0
    with torch.no_grad():
        for text in heldout[:200]:
            ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer.encode(text)]])
            out = model(input_ids=ids, labels=ids)
            total += float(out.loss) * (ids.shape[1] - 1)
            count += ids.shape[1] - 1
    return total / count


BUILDERS = {NAME: build_breast_cancer, LM_NAME: build_clinical_lm}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m appliance.default_model.build")
    parser.add_argument("models", nargs="*", choices=sorted(BUILDERS), help="default: all")
    for name in parser.parse_args(argv).models or sorted(BUILDERS):
        BUILDERS[name]()


if __name__ == "__main__":
    main()
