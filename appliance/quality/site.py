"""Running the site evaluation beside serving: one thread, sessions of one intra-op thread.

Owns how a version is evaluated on this box: a session of its own on the box's
execution providers (the ones that serve it), limited to one intra-op thread, run from
one dedicated evaluation thread in batches of ``BATCH_ROWS`` rows. Serving sessions
and their batchers are never used, so live traffic keeps its threads and its queue;
the evaluation takes one core at most, and that thread runs in Linux's idle scheduling
class (nice 19 where that is refused), so a serving thread that wakes takes the core
from it at once. The parsed data is kept
while its file is unchanged: parsing is Python work that would hold the GIL against the
event loop at every evaluation (``benchmarks/eval_gate.py`` measures what evaluation
costs live traffic). The lifecycle calls ``evaluate`` at activation and for
``appliance models evaluate``.

A generative model (task ``text-generation``) is evaluated on its loaded versions, which
the lifecycle hands over (``generators``): the candidate's engine, loaded beside the
serving one for its self-test, and the serving version's. Each answers the prompts
greedily one at a time (``appliance.quality.generation``), so the evaluation holds one
sequence of an engine's batch at most and live generations keep the rest; the prompt
file is read on the evaluation thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from appliance.config import Config, ModelOverrides
from appliance.embedding import TextEmbedder
from appliance.errors import ConfigError
from appliance.package.manifest import TensorSpec
from appliance.quality.evaluation import (
    BATCH_ROWS,
    CLASSIFIER_METRICS,
    EMBEDDING_METRICS,
    EvalData,
    PairData,
    Scores,
    cosine_similarity,
    read_eval_data,
    read_pair_data,
    score,
    score_rows,
)
from appliance.quality.gate import GateReport, compare
from appliance.quality.generation import (
    GENERATION_METRICS,
    PromptData,
    evaluate_generation,
    read_prompt_data,
)
from appliance.repository import TEXT_GENERATION, VersionSource
from appliance.runtime import Array, ProviderChoice, Session

if TYPE_CHECKING:
    from appliance.http.generative import GenerativeModel

#: The loaded versions of a generative model, by version number.
Generators = Mapping[int, "GenerativeModel"]

log = logging.getLogger(__name__)

#: Niceness of the evaluation thread: the least CPU share when serving wants the cores.
EVALUATION_NICENESS = 19


def _lower_priority() -> None:
    """Evaluation thread start: this thread alone (Linux threads have their own policy)
    to the idle class, where a serving thread that wakes up takes the core at once;
    where that is refused, nice 19."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0: this thread
        return
    except (OSError, AttributeError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), EVALUATION_NICENESS)
    except (OSError, AttributeError):  # not Linux, or not allowed: run at normal priority
        log.info("evaluation thread runs at normal priority (could not lower it)")


class SiteEvaluator:
    """Scores versions of a model on its ``eval_data``; one evaluation at a time."""

    def __init__(self, config: Config, providers: ProviderChoice):
        self._config = config
        self._providers = providers
        # One thread: evaluations queue behind each other instead of taking more cores.
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="evaluation", initializer=_lower_priority
        )
        # The last file read, by (path, size, mtime, task, labels); evaluation thread only.
        self._data_key: tuple[Path, int, int, str, tuple[str, ...]] | None = None
        self._data: EvalData | PairData | PromptData | None = None
        #: The latest scores of each (model, version) evaluated (``appliance_eval_metric``).
        self.latest: dict[tuple[str, int], Scores] = {}

    def configured(self, name: str) -> bool:
        """Whether ``[models.NAME] eval_data`` is set, so activations are gated."""
        return self._config.overrides_for(name).eval_data is not None

    async def evaluate(
        self,
        candidate: VersionSource,
        serving: VersionSource | None,
        generators: Generators | None = None,
    ) -> GateReport:
        """The gate's report of ``candidate`` against ``serving`` (None: alone); a
        generative model's versions answer through ``generators``, its loaded versions."""
        settings = self._config.overrides_for(candidate.name)
        if settings.eval_data is None:
            raise ConfigError(
                f"model {candidate.name!r} has no evaluation data; set [models."
                f"{candidate.name}] eval_data to a labelled CSV or Parquet file on this box"
            )
        metric = settings.eval_metric or _default_metric(candidate)
        if candidate.task == TEXT_GENERATION:
            report = await self._compare_generation(
                candidate, serving, generators or {}, metric, settings
            )
        else:
            loop = asyncio.get_running_loop()
            report = await loop.run_in_executor(
                self._executor,
                self._compare,
                candidate,
                serving,
                settings.eval_data,
                metric,
                settings.eval_max_drop,
            )
        log.info("evaluation gate: %s", report.summary())  # scores only, never rows
        return report

    def _compare(
        self,
        candidate: VersionSource,
        serving: VersionSource | None,
        path: Path,
        metric: str,
        max_drop: float,
    ) -> GateReport:
        """Evaluation thread: read the data, score both versions, compare."""
        embedding = candidate.task == "embedding"
        _check_metric(candidate, metric, EMBEDDING_METRICS if embedding else CLASSIFIER_METRICS)
        # An embedding model's pairs have no class labels; () keys them in the cache.
        data = self._read(path, candidate.task, () if embedding else _labels(candidate))
        after = self._scores(candidate, data, metric)
        before = self._scores(serving, data, metric) if serving is not None else None
        return self._report(candidate, serving, after, before, max_drop)

    async def _compare_generation(
        self,
        candidate: VersionSource,
        serving: VersionSource | None,
        generators: Generators,
        metric: str,
        settings: ModelOverrides,
    ) -> GateReport:
        """On the event loop: the prompts read on the evaluation thread, then each
        version's greedy answers, one prompt at a time, scored against the references."""
        _check_metric(candidate, metric, GENERATION_METRICS)
        path, max_drop = settings.eval_data, settings.eval_max_drop
        if path is None:  # pragma: no cover - evaluate checked it
            raise ConfigError(f"model {candidate.name!r} has no evaluation data")
        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(self._executor, self._read, path, TEXT_GENERATION, ())
        if not isinstance(data, PromptData):  # pragma: no cover - read by its task
            raise TypeError("expected prompt data")
        after = await evaluate_generation(_generator(generators, candidate), data, metric)
        before = None
        if serving is not None:
            before = await evaluate_generation(_generator(generators, serving), data, metric)
        return self._report(candidate, serving, after, before, max_drop)

    def _report(
        self,
        candidate: VersionSource,
        serving: VersionSource | None,
        after: Scores,
        before: Scores | None,
        max_drop: float,
    ) -> GateReport:
        """Keep both versions' scores for the metric; compare them."""
        self.latest[(candidate.name, candidate.version)] = after
        if serving is not None and before is not None:
            self.latest[(serving.name, serving.version)] = before
        return compare(
            candidate.name,
            candidate_version=candidate.version,
            candidate=after,
            serving_version=serving.version if serving is not None else None,
            serving=before,
            max_drop=max_drop,
        )

    def _read(
        self, path: Path, task: str, labels: tuple[str, ...]
    ) -> EvalData | PairData | PromptData:
        """A generative model's prompts, a classifier's data (``labels`` given) or text
        pairs (none), kept while the file is unchanged."""
        try:
            stat = path.stat()
        except OSError:
            stat = None
        key = (path, stat.st_size, stat.st_mtime_ns, task, labels) if stat is not None else None
        if key is None or self._data is None or self._data_key != key:
            self._data, self._data_key = _read_data(path, task, labels), key
        return self._data

    def _scores(
        self, source: VersionSource, data: EvalData | PairData | PromptData, metric: str
    ) -> Scores:
        if isinstance(data, PromptData):  # pragma: no cover - generative models go apart
            raise TypeError("prompt data is scored by _compare_generation")
        session = Session(source.model_file, self._providers, intra_op_threads=1)
        if isinstance(data, PairData):
            return self._pair_scores(source, session, data, metric)
        feed, output = _classifier_io(source, session, data)
        parts = []
        for start in range(0, data.rows, BATCH_ROWS):  # (batch, features) per run
            rows = data.features[start : start + BATCH_ROWS]
            parts.append(np.asarray(session.run({feed: rows})[output], dtype=np.float64))
        outputs: Array = np.concatenate(parts)  # (rows, classes)
        return score(metric, data, outputs)

    def _pair_scores(
        self, source: VersionSource, session: Session, data: PairData, metric: str
    ) -> Scores:
        """Cosine similarity of each pair's embeddings, correlated with its label."""
        embedder = TextEmbedder.load(
            source.folder, source.manifest, session.inputs, session.outputs
        )
        first = _embed(session, embedder, data.first)  # (rows, dim)
        second = _embed(session, embedder, data.second)
        similarity = cosine_similarity(first, second)  # (rows,)
        function = EMBEDDING_METRICS[metric]
        return score_rows(metric, function, data.similarity, similarity, data.groups)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


#: Texts per session run of an embedding model: one padded (rows, tokens) batch.
EMBED_ROWS = 32


def _embed(session: Session, embedder: TextEmbedder, texts: tuple[str, ...]) -> Array:
    parts = []
    for start in range(0, len(texts), EMBED_ROWS):
        encoded = embedder.encode(embedder.tokenize(texts[start : start + EMBED_ROWS]))
        output = session.run(encoded.feeds)[embedder.output.name]
        parts.append(embedder.pool(output, encoded.mask))
    return np.concatenate(parts)


def _read_data(path: Path, task: str, labels: tuple[str, ...]) -> EvalData | PairData | PromptData:
    if task == TEXT_GENERATION:
        return read_prompt_data(path)
    return read_eval_data(path, labels) if labels else read_pair_data(path)


def _generator(generators: Generators, source: VersionSource) -> GenerativeModel:
    """The loaded engine of a generative version (the lifecycle loads it first)."""
    model = generators.get(source.version)
    if model is None:
        raise ConfigError(
            f"model {source.name!r} version {source.version}: expected the version loaded "
            f"to evaluate its generations, loaded: {sorted(generators)}"
        )
    return model


def _default_metric(source: VersionSource) -> str:
    # Spearman: the usual headline of STS-style embedding benchmarks; token F1: SQuAD's,
    # which credits an answer that is partly right where exact match gives it nothing.
    if source.task == TEXT_GENERATION:
        return "token_f1"
    return "spearman" if source.task == "embedding" else "accuracy"


_KINDS = {"embedding": "an embedding model", TEXT_GENERATION: "a generative model"}


def _check_metric(source: VersionSource, metric: str, known: Mapping[str, object]) -> None:
    if metric not in known:
        kind = _KINDS.get(source.task, "a classifier")
        raise ConfigError(
            f"model {source.name!r}: eval_metric {metric!r} does not score {kind}; "
            f"expected one of {sorted(known)}"
        )


def _labels(source: VersionSource) -> tuple[str, ...]:
    labels = source.manifest.labels if source.manifest is not None else None
    if not labels:
        raise ConfigError(
            f"model {source.name!r} version {source.version}: the evaluation gate scores "
            "classifiers; expected a package with class labels (package build --labels)"
        )
    return tuple(labels)


def _classifier_io(source: VersionSource, session: Session, data: EvalData) -> tuple[str, str]:
    """The one (batch, features) input and the (batch, classes) output to score."""
    what = f"model {source.name!r} version {source.version}"
    inputs = session.inputs
    features = data.features.shape[1]
    if len(inputs) != 1 or not _fits(inputs[0], features):
        raise ConfigError(
            f"{what}: the evaluation data has {features} feature columns; expected a model "
            f"with one input of shape [-1, {features}], got "
            f"{[(s.name, list(s.shape)) for s in inputs]}"
        )
    classes = len(_labels(source))
    for spec in session.outputs:
        if _fits(spec, classes):
            return inputs[0].name, spec.name
    raise ConfigError(
        f"{what}: expected an output of shape [-1, {classes}] (one score per label), got "
        f"{[(s.name, list(s.shape)) for s in session.outputs]}"
    )


def _fits(spec: TensorSpec, width: int) -> bool:
    return len(spec.shape) == 2 and spec.shape[1] in (-1, width)


__all__ = ["SiteEvaluator"]
