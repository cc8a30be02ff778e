"""Outcome feedback: the predicted class per request id, and live accuracy per version.

Owns what the box remembers of answered requests and what it learns from the true
labels clients report later (``appliance.feedback.v1.Feedback/Report``, ``POST
/v2/models/{name}/feedback``). For a classifier request of one row that carried an
``id``, only ``(version, predicted class index)`` is kept under that id: never an input,
never an output value. The ids of a model are kept for its ``feedback_window`` most
recent requests (the oldest is forgotten first); an id answers one report, then is
forgotten. Live accuracy of a version is the share of correct predictions among its
``feedback_window`` most recent reports. A report may name the case's ``group`` (a
ward, a scanner, an age band): it then counts towards that group's live accuracy too,
kept the same way. A model has at most ``MAX_GROUPS`` groups, so a client cannot grow
the box's memory (or the metric's series) without bound; a report naming one more is
refused before its id is used.

Everything here runs on the event loop (the manager's infer and the report RPC); the
metrics collector reads from its own thread, hence the lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from appliance.clip import quoted
from appliance.config import Config
from appliance.errors import InvalidInputError, ModelNotFoundError

if TYPE_CHECKING:
    from appliance.model import LoadedModel

Array = np.ndarray[Any, Any]
#: Called after each report: model name, version, its live accuracy and report count.
OnAccuracy = Callable[[str, int, float, int], None]
#: Distinct groups a model's reports may name: wards or age bands are a handful, while
#: each one costs a window of memory and a metric series per version.
MAX_GROUPS = 32
#: Characters of a group's name: a label, not a text.
MAX_GROUP_CHARS = 128


@dataclass(frozen=True)
class Verdict:
    """What one report found: the version that answered, and whether it was right."""

    model: str
    version: int
    correct: bool
    live_accuracy: float
    reports: int


class _ModelOutcomes:
    def __init__(self, labels: tuple[str, ...], window: int):
        self.labels = labels
        self.window = window
        self.predicted: OrderedDict[str, tuple[int, int]] = OrderedDict()  # id -> (ver, cls)
        self.reported: dict[int, deque[bool]] = {}  # version -> recent correctness
        self.grouped: dict[tuple[int, str], deque[bool]] = {}  # (version, group) -> the same
        self.groups: set[str] = set()

    def remember(self, request_id: str, version: int, predicted: int) -> None:
        self.predicted[request_id] = (version, predicted)
        self.predicted.move_to_end(request_id)
        while len(self.predicted) > self.window:
            self.predicted.popitem(last=False)


class Outcomes:
    """Predictions kept for feedback, and the live accuracy reports give them."""

    def __init__(self, config: Config, on_accuracy: OnAccuracy | None = None):
        self._config = config
        self._on_accuracy = on_accuracy
        self._models: dict[str, _ModelOutcomes] = {}
        self._lock = threading.Lock()

    def remember(self, model: LoadedModel, request_id: str, outputs: Mapping[str, Array]) -> None:
        """After an answer: keep the predicted class of a one-row classifier request."""
        labels = model.spec.labels
        if not request_id or not labels:
            return
        scores = _class_scores(outputs, len(labels))
        if scores is None or scores.shape[0] != 1:
            return
        with self._lock:
            outcomes = self._models.get(model.name)
            if outcomes is None or outcomes.labels != tuple(labels):
                window = self._config.overrides_for(model.name).feedback_window
                outcomes = self._models[model.name] = _ModelOutcomes(tuple(labels), window)
            outcomes.remember(request_id, model.version, int(np.argmax(scores[0])))

    def report(self, model_name: str, request_id: str, label: str, group: str = "") -> Verdict:
        """A client's true label for an earlier request; counts towards live accuracy,
        the version's and, when ``group`` is given, that group's."""
        with self._lock:
            outcomes = self._models.get(model_name)
            if outcomes is None:
                raise ModelNotFoundError(
                    f"model {quoted(model_name)} has no predictions kept for feedback; "
                    "expected a classifier that answered requests sent with an id"
                )
            if label not in outcomes.labels:
                raise InvalidInputError(
                    f"label {quoted(label)} is not a label of model {quoted(model_name)}; "
                    f"expected one of {list(outcomes.labels)}"
                )
            _check_group(model_name, outcomes, group)
            kept = outcomes.predicted.pop(request_id, None)
            if kept is None:
                raise ModelNotFoundError(
                    f"model {quoted(model_name)} keeps no prediction for request id "
                    f"{quoted(request_id)}: it was never answered with that id, was already "
                    f"reported, or is older than the last {outcomes.window} requests "
                    "(feedback_window)"
                )
            version, predicted = kept
            correct = outcomes.labels[predicted] == label
            recent = outcomes.reported.setdefault(version, deque(maxlen=outcomes.window))
            recent.append(correct)
            accuracy, count = sum(recent) / len(recent), len(recent)
            if group:
                outcomes.groups.add(group)
                key = (version, group)
                outcomes.grouped.setdefault(key, deque(maxlen=outcomes.window)).append(correct)
        if self._on_accuracy is not None:
            self._on_accuracy(model_name, version, accuracy, count)
        return Verdict(model_name, version, recent[-1], accuracy, count)

    def live_accuracy(self) -> list[tuple[str, int, float, int]]:
        """(model, version, live accuracy, reports) of every version with reports."""
        with self._lock:
            return [
                (name, version, sum(recent) / len(recent), len(recent))
                for name, outcomes in sorted(self._models.items())
                for version, recent in sorted(outcomes.reported.items())
                if recent
            ]

    def group_accuracy(self) -> list[tuple[str, int, str, float, int]]:
        """(model, version, group, live accuracy, reports) of every group with reports."""
        with self._lock:
            return [
                (name, version, group, sum(recent) / len(recent), len(recent))
                for name, outcomes in sorted(self._models.items())
                for (version, group), recent in sorted(outcomes.grouped.items())
                if recent
            ]


def _check_group(model_name: str, outcomes: _ModelOutcomes, group: str) -> None:
    """A known group, or room for one more: else INVALID_ARGUMENT, the id still kept."""
    if len(group) > MAX_GROUP_CHARS:
        raise InvalidInputError(
            f"group: expected a name of at most {MAX_GROUP_CHARS} characters, got {len(group)}"
        )
    if not group or group in outcomes.groups or len(outcomes.groups) < MAX_GROUPS:
        return
    raise InvalidInputError(
        f"group {quoted(group)}: model {quoted(model_name)} already has reports in "
        f"{MAX_GROUPS} groups, the most it keeps live accuracy for; expected one of its "
        "groups, or no group"
    )


def _class_scores(outputs: Mapping[str, Array], classes: int) -> Array | None:
    """The first (rows, classes) output: one score per label."""
    for array in outputs.values():
        if array.ndim == 2 and array.shape[1] == classes:
            return array
    return None


__all__ = ["MAX_GROUPS", "MAX_GROUP_CHARS", "OnAccuracy", "Outcomes", "Verdict"]
