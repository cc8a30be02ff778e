"""The recipe: one YAML file saying what to compress, on which data, how, and within what budget.

Validated with pydantic; a bad recipe raises ``RecipeError`` naming the key path and what
was expected. Relative paths are resolved against the recipe file's folder, so a recipe
travels with its data. Example (tabular)::

    name: breast-cancer
    version: 1
    task: classification
    labels: [malignant, benign]
    source:
      module: compress.models:TabularMLP
      kwargs: {in_features: 30, num_classes: 2}
      weights: teacher.pt
    data:
      train: {path: train.csv, label: label}
      eval: {path: eval.csv, label: label, group: site}
    steps:
      distill: {student_kwargs: {hidden: [16]}, epochs: 30}
      prune: {structured: 0.5, finetune_epochs: 10}
      quantize: {modes: [dynamic, static], calibration: [minmax, percentile]}
    target: {provider: cpu, threads: 2}
    budget: {metric: accuracy, max_drop: 0.02}
    package: {key: keys/private.pem}
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from compress.errors import RecipeError


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceSpec(_Strict):
    """Exactly one of ``module`` (``package.module:factory``), ``huggingface`` or ``onnx``."""

    module: str | None = Field(default=None, pattern=r"^[\w.]+:\w+$")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    weights: Path | None = None  # state_dict saved with torch.save, for ``module``
    huggingface: Path | None = None  # a local model folder (nothing is downloaded)
    onnx: Path | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> SourceSpec:
        kinds = [k for k in ("module", "huggingface", "onnx") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"expected exactly one of module, huggingface, onnx; got {kinds}")
        return self

    @property
    def kind(self) -> Literal["module", "huggingface", "onnx"]:
        if self.module is not None:
            return "module"
        return "huggingface" if self.huggingface is not None else "onnx"


class DataSpec(_Strict):
    """A local data set: CSV/Parquet, ``.npz``/``.npy``, text lines or an image folder."""

    path: Path
    label: str | None = "label"  # column (tables) or array (``.npz``) with the class
    group: str | None = None  # column/array naming a subgroup (site, sex, age band)
    features: list[str] | None = None  # table columns to use; default: all but label/group
    limit: int | None = Field(default=None, ge=1)  # first N rows only


class DataSection(_Strict):
    train: DataSpec | None = None  # distillation and recovery fine-tuning
    calibration: DataSpec | None = None  # static quantization and the reference profile
    eval: DataSpec


class DistillStep(_Strict):
    #: Module sources: factory kwargs of the (smaller) student, trained from scratch.
    student_kwargs: dict[str, Any] | None = None
    #: Hugging Face sources: teacher layers kept, initialising the student's layers.
    layers: list[int] | None = None
    epochs: int = Field(default=20, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    batch_size: int = Field(default=64, ge=1)
    temperature: float = Field(default=2.0, gt=0)
    #: Weight of the hard-label loss when labels exist (the rest goes to the teacher's logits).
    alpha: float = Field(default=0.3, ge=0, le=1)
    #: Hugging Face encoders: teacher hidden state each student layer matches (1-based:
    #: ``k`` is teacher layer k's output); default: each kept layer's own, the last the last.
    layer_map: list[int] | None = None
    #: Hugging Face encoders: loss weights of the pooled-embedding cosine, the per-layer
    #: hidden states (MSE / teacher variance) and the attention distributions (KL).
    cosine_weight: float = Field(default=10.0, ge=0)
    hidden_weight: float = Field(default=1.0, ge=0)
    attention_weight: float = Field(default=0.0, ge=0)
    #: Hugging Face encoders: keep the word embeddings as the teacher's (the local text
    #: uses a small part of the vocabulary).
    freeze_embeddings: bool = True


class PruneStep(_Strict):
    """Unstructured magnitude (zeros weights) and/or structured (removes units physically)."""

    magnitude: float = Field(default=0.0, ge=0, lt=1)  # fraction of weights zeroed
    structured: float = Field(default=0.0, ge=0, lt=1)  # fraction of neurons/channels removed
    heads: float = Field(default=0.0, ge=0, lt=1)  # transformers: fraction of heads removed
    finetune_epochs: int = Field(default=5, ge=0)
    lr: float = Field(default=1e-3, gt=0)
    batch_size: int = Field(default=64, ge=1)


QuantMode = Literal["dynamic", "static"]
CalibrationName = Literal["minmax", "entropy", "percentile"]


def _default_modes() -> list[QuantMode]:
    return ["dynamic"]  # no calibration data needed; the usual choice on CPU


def _default_calibration() -> list[CalibrationName]:
    return ["minmax"]


class QuantizeStep(_Strict):
    modes: list[QuantMode] = Field(default_factory=_default_modes)
    calibration: list[CalibrationName] = Field(default_factory=_default_calibration)
    per_channel: list[bool] = Field(default_factory=lambda: [True])
    format: Literal["qdq", "qoperator"] = "qdq"  # static only; QDQ is ORT's recommended form
    #: Spare the most sensitive layers until the budget holds (at most this many).
    fallback_max_layers: int = Field(default=4, ge=0)
    #: How a spared layer is kept: 8-bit weights in blocks (MatMul only; others stay in
    #: float), or all in float. Blocks measured as fast as plain int8 and as faithful as
    #: float on MiniLM.
    fallback: Literal["blockwise", "float"] = "blockwise"
    fallback_block_size: Literal[32, 64, 128, 256] = 128
    #: Sensitivity per transformer layer ("block", few probes) or per weight node ("node").
    sensitivity: Literal["block", "node"] = "block"
    calibration_samples: int = Field(default=256, ge=8)


class Steps(_Strict):
    distill: DistillStep | None = None
    prune: PruneStep | None = None
    quantize: QuantizeStep | None = Field(default_factory=QuantizeStep)
    #: fp16 variants (only useful on GPU providers; added automatically for cuda targets).
    fp16: bool | None = None


class Target(_Strict):
    provider: Literal["cpu", "cuda"] = "cpu"
    threads: int = Field(default=0, ge=0)  # ORT intra-op threads; 0 lets ORT decide
    #: Sequence length used for latency/throughput of text models (and the export's dummy).
    seq_length: int = Field(default=128, ge=1)
    latency_runs: int = Field(default=20, ge=1)
    throughput_batch: int = Field(default=32, ge=1)


class Budget(_Strict):
    """Acceptable loss: ``metric`` may drop at most ``max_drop`` below the uncompressed
    model's, and must stay at least ``min_value``; both apply to every group too."""

    metric: Literal["accuracy", "f1", "auroc", "cosine"] = "accuracy"
    max_drop: float | None = Field(default=0.01, ge=0)
    min_value: float | None = None


class PackageSpec(_Strict):
    key: Path  # PEM EC private key
    max_batch_size: int = Field(default=32, ge=0)
    golden_cases: int = Field(default=4, ge=1)


class Recipe(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    version: int = Field(default=1, ge=1)
    task: Literal["classification", "embedding"]
    labels: list[str] | None = None
    source: SourceSpec
    data: DataSection
    steps: Steps = Field(default_factory=Steps)
    target: Target = Field(default_factory=Target)
    budget: Budget = Field(default_factory=Budget)
    package: PackageSpec | None = None  # absent: report only, no package
    seed: int = 0
    #: Where the recipe's relative paths are resolved (set by ``load_recipe``).
    base_dir: Path = Path()

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else self.base_dir / path

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        if self.task == "embedding" and self.budget.metric != "cosine":
            raise ValueError("budget.metric: expected 'cosine' for task 'embedding'")
        if self.task == "classification" and self.budget.metric == "cosine":
            raise ValueError("budget.metric: 'cosine' applies to task 'embedding' only")
        if self.source.kind == "onnx" and (self.steps.distill or self.steps.prune):
            raise ValueError(
                "steps: distill and prune need a PyTorch or Hugging Face source, "
                "not an ONNX file; remove them or give the PyTorch model"
            )
        if (self.steps.distill or self.steps.prune) and self.data.train is None:
            raise ValueError("data.train: expected a data set for distill/prune, found none")
        return self


# --- text generation (causal LMs built by onnxruntime-genai's model builder) ---------

#: ``config.json`` ``architectures`` the builder turns into ONNX (Llama, Mistral, Qwen2/3,
#: Phi-3, Gemma; SmolLM checkpoints are ``LlamaForCausalLM``).
GENERATIVE_ARCHITECTURES = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "Phi3ForCausalLM",
    "GemmaForCausalLM",
    "Gemma2ForCausalLM",
)


class TextSpec(_Strict):
    """Local text: ``.txt`` (one passage a line) or a CSV/Parquet table with a text column
    and optionally a group column (site, department) for the per-group budget."""

    path: Path
    column: str = "text"  # tables only
    group: str | None = None  # tables only
    limit: int | None = Field(default=None, ge=1)


class TextData(_Strict):
    train: TextSpec | None = None  # distillation and pruning recovery
    calibration: TextSpec | None = None  # GPTQ; default: train, else eval
    eval: TextSpec  # held out: perplexity and agreement


class LmDistillStep(_Strict):
    """A student with the teacher's ``layers`` (indices), trained on the local text."""

    layers: list[int] = Field(min_length=1)
    steps: int = Field(default=200, ge=1)
    lr: float = Field(default=5e-4, gt=0)
    batch_size: int = Field(default=8, ge=1)
    seq_length: int = Field(default=64, ge=8)
    temperature: float = Field(default=2.0, gt=0)
    #: Weight of the hidden-state (MSE, per mapped layer) loss beside the logit loss.
    hidden_weight: float = Field(default=1.0, ge=0)


class LmPruneStep(_Strict):
    """Structured: FFN channels and attention head groups removed by weight magnitude."""

    ffn: float = Field(default=0.0, ge=0, lt=1)  # fraction of FFN channels removed
    heads: float = Field(default=0.0, ge=0, lt=1)  # fraction of KV head groups removed
    finetune_steps: int = Field(default=100, ge=0)
    lr: float = Field(default=5e-4, gt=0)
    batch_size: int = Field(default=8, ge=1)
    seq_length: int = Field(default=64, ge=8)


Int4Algorithm = Literal["rtn", "k_quant", "gptq", "hqq"]
Precision = Literal["int4", "int8"]
BlockSize = Literal[16, 32, 64, 128, 256]


def _int4() -> list[Precision]:
    return ["int4"]


def _rtn() -> list[Int4Algorithm]:
    return ["rtn"]


def _block_32() -> list[BlockSize]:
    return [32]


class LmQuantizeStep(_Strict):
    """Weight-only quantization (MatMulNBits): the cross product of the lists below.

    int4 ``rtn`` and ``k_quant`` go through the builder; ``gptq`` (with calibration text)
    and ``hqq`` through ONNX Runtime's ``MatMulNBitsQuantizer`` on the fp32 build.
    """

    precisions: list[Precision] = Field(default_factory=_int4)
    algorithms: list[Int4Algorithm] = Field(default_factory=_rtn)
    block_sizes: list[BlockSize] = Field(default_factory=_block_32)
    accuracy_level: Literal[0, 1, 2, 3, 4] = 4  # 4: int8 activations on CPU
    #: Keep the lm_head MatMul in float (it is the largest, most output-sensitive weight).
    spare_lm_head: list[bool] = Field(default_factory=lambda: [False])
    #: Spare the most sensitive decoder layers at 8 bit, one more at a time (at most this).
    fallback_max_layers: int = Field(default=4, ge=0)
    calibration_samples: int = Field(default=32, ge=1)


class LmSteps(_Strict):
    distill: LmDistillStep | None = None
    prune: LmPruneStep | None = None
    quantize: LmQuantizeStep | None = Field(default_factory=LmQuantizeStep)
    #: fp16 and bf16 builds (added automatically for cuda targets; built, not benchmarked
    #: on a CPU-only box).
    half: bool | None = None


class LmTarget(_Strict):
    provider: Literal["cpu", "cuda"] = "cpu"
    threads: int = Field(default=0, ge=0)
    #: Perplexity windows: held-out text packed into rows of this many tokens.
    eval_length: int = Field(default=128, ge=8)
    #: Speed: prompts of this many tokens, each generating ``new_tokens`` tokens.
    prompt_tokens: int = Field(default=32, ge=1)
    new_tokens: int = Field(default=32, ge=1)
    concurrency: list[int] = Field(default_factory=lambda: [1, 8], min_length=1)
    speed_rounds: int = Field(default=2, ge=1)


class LmBudget(_Strict):
    """``perplexity`` may rise at most ``max_increase`` (relative: 0.05 is +5 %) over the
    fp32 build's, and stay at most ``max_perplexity``; ``agreement`` (greedy next token
    equal to the fp32 build's) may fall at most ``max_drop`` below 1.0. All apply to every
    group too."""

    metric: Literal["perplexity", "agreement"] = "perplexity"
    max_increase: float | None = Field(default=None, ge=0)
    max_drop: float | None = Field(default=None, ge=0, le=1)
    max_perplexity: float | None = Field(default=None, gt=0)  # absolute ceiling

    @model_validator(mode="after")
    def _one_bound(self) -> LmBudget:
        if self.metric == "perplexity" and self.max_increase is None:
            raise ValueError("budget: expected max_increase for metric 'perplexity'")
        if self.metric == "agreement" and self.max_drop is None:
            raise ValueError("budget: expected max_drop for metric 'agreement'")
        return self


class LmPackageSpec(_Strict):
    key: Path  # PEM EC private key
    golden_cases: int = Field(default=2, ge=1)
    golden_tokens: int = Field(default=16, ge=1)


class LmRecipe(_Strict):
    """A recipe of ``task: text-generation``: a local Hugging Face causal LM in, a signed
    onnxruntime-genai package out."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    version: int = Field(default=1, ge=1)
    task: Literal["text-generation"]
    source: SourceSpec
    data: TextData
    steps: LmSteps = Field(default_factory=LmSteps)
    target: LmTarget = Field(default_factory=LmTarget)
    budget: LmBudget
    package: LmPackageSpec | None = None
    seed: int = 0
    base_dir: Path = Path()

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else self.base_dir / path

    @model_validator(mode="after")
    def _consistent(self) -> LmRecipe:
        if self.source.huggingface is None:
            raise ValueError(
                "source: expected huggingface (a local model folder) for task 'text-generation'"
            )
        if (self.steps.distill or self.steps.prune) and self.data.train is None:
            raise ValueError("data.train: expected text for distill/prune, found none")
        return self


AnyRecipe = Annotated[Recipe | LmRecipe, Field(discriminator="task")]
_ANY_RECIPE: TypeAdapter[Recipe | LmRecipe] = TypeAdapter(AnyRecipe)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = err["loc"]
        if loc and loc[0] in _TASKS:  # the union's tag, not a key of the recipe
            loc = loc[1:]
        where = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            parts.append(f"{where}: missing key")
        elif err["type"] == "extra_forbidden":
            parts.append(f"{where}: unknown key")
        else:
            parts.append(f"{where}: {msg} (got {err.get('input')!r:.60})")
    return "; ".join(parts)


_TASKS = ("classification", "embedding", "text-generation")


def parse_recipe(raw: Any, base_dir: Path) -> Recipe | LmRecipe:
    """A ``Recipe`` (classification, embedding) or an ``LmRecipe`` (text-generation)."""
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe: expected a mapping at the top level, got {type(raw).__name__}")
    if "task" not in raw:
        raise RecipeError("recipe: task: missing key")
    if raw["task"] not in _TASKS:
        raise RecipeError(f"recipe: task: expected one of {', '.join(_TASKS)}, got {raw['task']!r}")
    try:
        return _ANY_RECIPE.validate_python({**raw, "base_dir": base_dir})
    except ValidationError as exc:
        raise RecipeError(f"recipe: {_describe(exc)}") from exc


def load_recipe(path: Path) -> Recipe | LmRecipe:
    """Read and validate a recipe file; ``RecipeError`` names the key and the expectation."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RecipeError(f"{path}: no such recipe file") from exc
    except (OSError, yaml.YAMLError) as exc:
        raise RecipeError(f"{path}: expected a YAML recipe, could not read it: {exc}") from exc
    return parse_recipe(raw, path.resolve().parent)


__all__ = [
    "GENERATIVE_ARCHITECTURES",
    "Budget",
    "DataSpec",
    "DistillStep",
    "LmBudget",
    "LmDistillStep",
    "LmPackageSpec",
    "LmPruneStep",
    "LmQuantizeStep",
    "LmRecipe",
    "LmSteps",
    "LmTarget",
    "PackageSpec",
    "PruneStep",
    "QuantizeStep",
    "Recipe",
    "SourceSpec",
    "Target",
    "TextData",
    "TextSpec",
    "load_recipe",
    "parse_recipe",
]
