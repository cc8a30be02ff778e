"""Running the site evaluation beside serving: one thread, sessions of one intra-op thread.

Owns how a version is evaluated on this box: a session of its own on the box's
execution providers (the ones that serve it), limited to one intra-op thread, run from
one dedicated evaluation thread in batches of ``BATCH_ROWS`` rows. Serving sessions
and their batchers are never used, so live traffic keeps its threads and its queue;
the evaluation takes one core at most, and that thread runs at the lowest CPU priority
(nice 19), so on a busy box the serving threads come first. The parsed data is kept
while its file is unchanged: parsing is Python work that would hold the GIL against the
event loop at every evaluation (``benchmarks/eval_gate.py`` measures what evaluation
costs live traffic). The lifecycle calls ``evaluate`` at activation and for
``appliance models evaluate``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from appliance.config import Config
from appliance.embedding import TextEmbedder
from appliance.errors import ConfigError
from appliance.package.manifest import TensorSpec
from appliance.quality.evaluation import (
    BATCH_ROWS,
    CLASSIFIER_METRICS,
    EMBEDDING_METRICS,
    EvalData,
    Metric,
    PairData,
    Scores,
    cosine_similarity,
    read_eval_data,
    read_pair_data,
    score,
    score_rows,
)
from appliance.quality.gate import GateReport, compare
from appliance.repository import VersionSource
from appliance.runtime import Array, ProviderChoice, Session

log = logging.getLogger(__name__)

#: Niceness of the evaluation thread: the least CPU share when serving wants the cores.
EVALUATION_NICENESS = 19


def _lower_priority() -> None:
    """Evaluation thread start: nice this thread alone (Linux threads have their own)."""
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
        # The last file read, by (path, size, mtime, labels); evaluation thread only.
        self._data_key: tuple[Path, int, int, tuple[str, ...]] | None = None
        self._data: EvalData | PairData | None = None
        #: The latest scores of each (model, version) evaluated (``appliance_eval_metric``).
        self.latest: dict[tuple[str, int], Scores] = {}

    def configured(self, name: str) -> bool:
        """Whether ``[models.NAME] eval_data`` is set, so activations are gated."""
        return self._config.overrides_for(name).eval_data is not None

    async def evaluate(self, candidate: VersionSource, serving: VersionSource | None) -> GateReport:
        """The gate's report of ``candidate`` against ``serving`` (None: alone)."""
        settings = self._config.overrides_for(candidate.name)
        if settings.eval_data is None:
            raise ConfigError(
                f"model {candidate.name!r} has no evaluation data; set [models."
                f"{candidate.name}] eval_data to a labelled CSV or Parquet file on this box"
            )
        loop = asyncio.get_running_loop()
        report = await loop.run_in_executor(
            self._executor,
            self._compare,
            candidate,
            serving,
            settings.eval_data,
            settings.eval_metric or _default_metric(candidate),
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
        data = self._read(path, () if embedding else _labels(candidate))
        after = self._scores(candidate, data, metric)
        before = self._scores(serving, data, metric) if serving is not None else None
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

    def _read(self, path: Path, labels: tuple[str, ...]) -> EvalData | PairData:
        """A classifier's data (``labels`` given) or text pairs (none), kept while the
        file is unchanged."""
        try:
            stat = path.stat()
        except OSError:
            stat = None
        key = (path, stat.st_size, stat.st_mtime_ns, labels) if stat is not None else None
        if key is None or self._data is None or self._data_key != key:
            data = read_eval_data(path, labels) if labels else read_pair_data(path)
            self._data, self._data_key = data, key
        return self._data

    def _scores(self, source: VersionSource, data: EvalData | PairData, metric: str) -> Scores:
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


def _default_metric(source: VersionSource) -> str:
    # Spearman: the usual headline of STS-style embedding benchmarks.
    return "spearman" if source.task == "embedding" else "accuracy"


def _check_metric(source: VersionSource, metric: str, known: Mapping[str, Metric]) -> None:
    if metric not in known:
        kind = "an embedding model" if source.task == "embedding" else "a classifier"
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
