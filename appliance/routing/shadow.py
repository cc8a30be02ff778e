"""Shadow traffic: a share of live requests also goes to a candidate version.

While ``appliance models shadow NAME VERSION`` is in force, each request that the
serving version of NAME answered is, with probability ``sample``, sent again to the
candidate (a loaded version that is not the default) once the client's answer is
ready. The client only ever gets the serving version's answer: the copy runs as a task
of its own after the answer is computed, so it adds one task creation to the request
and never waits for the candidate; at most ``MAX_IN_FLIGHT`` copies run at once per
model (beyond that a request is not copied, and counted as skipped), each bounded by
``TIMEOUT_S``; the candidate's errors are counted and logged, never raised to anyone.
Its own batcher runs it, so it competes with serving for the CPU only, not for a queue.

Agreement, per row: the same top class when the model is a classifier (a package with
labels, or an output named ``probabilities``; its probability output as ``_classes``
finds it), else every output within cosine similarity ``MIN_COSINE`` of the
serving version's (exact equality for integer, boolean and string outputs). The share
of agreeing rows is ``appliance_shadow_agreement_ratio{model,version}``.

Shadows live in memory only: a restart ends them (the operator starts one again).
Starting and stopping, with loading and unloading the candidate, is ``control``'s.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from appliance.errors import ApplianceError
from appliance.model import Array, LoadedModel, ModelSpec, RequestTensor
from appliance.routing._classes import PROBABILITIES, by_row, probability_output

log = logging.getLogger(__name__)

#: Copies running at once per model; a burst beyond it is not copied (counted skipped).
MAX_IN_FLIGHT = 16
#: Seconds a copy may take before it counts as the candidate's failure.
TIMEOUT_S = 10.0
#: Cosine similarity at or above which a non-classifier row agrees.
MIN_COSINE = 0.99

Find = Callable[[str, str], LoadedModel | None]


@dataclass
class Shadow:
    """One model's shadow and its running counts (event loop only)."""

    name: str
    version: int  # the candidate
    sample: float  # share of requests copied, (0, 1]
    loaded_here: bool  # the shadow loaded the candidate: stopping it unloads it
    started_at: float = field(default_factory=time.time)
    requests: int = 0  # copied to the candidate
    failures: int = 0  # copies the candidate did not answer
    skipped: int = 0  # not copied: too many in flight, or the candidate not loaded
    rows: int = 0  # rows compared
    agreeing: int = 0  # rows on which the two agreed
    in_flight: int = 0

    @property
    def agreement(self) -> float | None:
        return self.agreeing / self.rows if self.rows else None


@dataclass(frozen=True)
class _Copy:
    """A request the serving version answered, and its answer, to compare against."""

    spec: ModelSpec
    tensors: Sequence[RequestTensor]
    requested_outputs: Sequence[str]
    served: Mapping[str, Array]


class ShadowTraffic:
    """The shadows in force, the copying and the comparing; owned by the manager."""

    def __init__(self, find: Find, rng: random.Random | None = None):
        self._find = find
        self._rng = rng or random.Random()
        self._shadows: dict[str, Shadow] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, name: str) -> Shadow | None:
        return self._shadows.get(name)

    def all(self) -> list[Shadow]:
        return [self._shadows[name] for name in sorted(self._shadows)]

    def begin(self, shadow: Shadow) -> None:
        self._shadows[shadow.name] = shadow

    def end(self, name: str) -> Shadow | None:
        return self._shadows.pop(name, None)

    def mirror(
        self,
        served: LoadedModel,
        tensors: Sequence[RequestTensor],
        requested_outputs: Sequence[str],
        outputs: Mapping[str, Array],
    ) -> None:
        """After ``served`` answered: maybe copy the request to the candidate. Never raises
        for the candidate, never waits for it."""
        shadow = self._shadows.get(served.name)
        if shadow is None or served.version == shadow.version:
            return
        if shadow.sample < 1.0 and self._rng.random() >= shadow.sample:
            return
        candidate = self._find(shadow.name, str(shadow.version))
        if candidate is None or shadow.in_flight >= MAX_IN_FLIGHT:
            shadow.skipped += 1
            return
        shadow.in_flight += 1
        shadow.requests += 1
        copy = _Copy(served.spec, tensors, requested_outputs, outputs)
        task = asyncio.get_running_loop().create_task(self._compare(shadow, candidate, copy))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _compare(self, shadow: Shadow, candidate: LoadedModel, copy: _Copy) -> None:
        try:
            deadline = time.monotonic() + TIMEOUT_S
            theirs = await candidate.infer(copy.tensors, copy.requested_outputs, deadline)
            agreeing, rows = agreement(copy.spec, copy.served, theirs)
        except ApplianceError as exc:  # the candidate's mistake, kept from the client
            shadow.failures += 1
            log.info("shadow of model %s version %d failed: %s", shadow.name, shadow.version, exc)
        except Exception:  # a bug shows in the log; serving must not see it
            shadow.failures += 1
            log.exception("shadow of model %s version %d failed", shadow.name, shadow.version)
        else:
            shadow.rows += rows
            shadow.agreeing += agreeing
        finally:
            shadow.in_flight -= 1

    async def close(self) -> None:
        """Cancel the copies still running (the daemon is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def agreement(
    spec: ModelSpec, served: Mapping[str, Array], candidate: Mapping[str, Array]
) -> tuple[int, int]:
    """(agreeing rows, rows) between two answers to one request (rule: module docstring)."""
    batched = spec.max_batch_size > 0
    scores = _class_output(spec)
    if scores is not None and scores in served and scores in candidate:
        ours, mine = by_row(served[scores], batched), by_row(candidate[scores], batched)
        if ours.shape != mine.shape:
            return 0, len(ours)
        same = ours.argmax(axis=1) == mine.argmax(axis=1)
        return int(same.sum()), len(same)
    rows: Array | None = None
    for name, value in served.items():
        answer = candidate.get(name)
        theirs = by_row(answer, batched) if answer is not None else None
        agree = _rows_agree(by_row(value, batched), theirs)
        rows = agree if rows is None else rows & agree
    if rows is None:
        return 0, 0
    return int(rows.sum()), len(rows)


def _class_output(spec: ModelSpec) -> str | None:
    """A classifier's probability output; only for a model that is one (a package with
    labels, or an output named ``probabilities``): an embedding is (batch, dim) FP32 too."""
    named = any(s.name == PROBABILITIES for s in spec.outputs)
    return probability_output(spec.outputs) if named or spec.labels else None


def _rows_agree(ours: Array, theirs: Array | None) -> Array:
    if theirs is None or theirs.shape != ours.shape:
        return np.zeros(len(ours), dtype=bool)
    if ours.dtype.kind != "f":
        return np.asarray((ours == theirs).all(axis=1))
    a, b = ours.astype(np.float64), theirs.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dot = (a * b).sum(axis=1)
    # Two zero rows agree; one zero row against another does not.
    cosine = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), np.all(a == b, axis=1))
    return np.asarray(cosine >= MIN_COSINE)


__all__ = ["MAX_IN_FLIGHT", "MIN_COSINE", "TIMEOUT_S", "Shadow", "ShadowTraffic", "agreement"]
