"""Cascades: one model name answered by the cheapest stage that is confident enough.

``[cascades.NAME] stages = ["small", "large"]`` with ``min_confidence``: a request to
NAME goes to the first stage; when every row's top-class probability reaches the
threshold, that stage's answer is the answer, else the request goes on to the next
stage, and the last stage always answers. Each stage is an ordinary loaded model (its
default version, followed through activations), so requests are validated and batched
by the stage's own batcher as if sent to it directly: there is no second serving path.
The decision is per request: a request of several rows is answered by one stage.

A cascade is served by ``ModelManager`` as a model of its own (``CascadeModel``): V2
metadata lists the stages' inputs and the outputs they have in common, under version 1
and platform ``ensemble`` (Triton's word for a pipeline of models). Its configuration is
checked when the models are loaded (``build_cascades``): every stage serves, all have the
same inputs, and they share a class-probability output (``_classes``). Counting which
stage answered is here; the Prometheus family is ``_metrics``'.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence

from appliance.clip import quoted
from appliance.config import CascadeConfig
from appliance.errors import ApplianceError, ConfigError, ModelNotFoundError, NotReadyError
from appliance.model import Array, LoadedModel, ModelSpec, ModelState, RequestTensor, Statistics
from appliance.package.manifest import TensorSpec
from appliance.routing._classes import probability_output, top_confidence

log = logging.getLogger(__name__)

#: The one version a cascade answers at (its stages have versions of their own).
CASCADE_VERSION = 1
PLATFORM = "ensemble"

Lookup = Callable[[str], LoadedModel]


class CascadeModel(LoadedModel):
    """A cascade as the V2 front ends see a model: specs, readiness and ``infer``.

    It holds no session and no batcher of its own (``LoadedModel.__init__`` is not run):
    every request is answered by a stage.
    """

    def __init__(
        self,
        spec: ModelSpec,
        config: CascadeConfig,
        probabilities: str,
        lookup: Lookup,
        front: LoadedModel,
    ):
        self.spec = spec
        self.config = config
        self.probabilities = probabilities
        self._lookup = lookup
        # V2 model configuration shows the execution providers and batching of the
        # last stage, the one that bounds the cascade's cost.
        self.session = front.session
        self.settings = front.settings
        self.manifest = None
        self.cache = None
        self.monitor = None
        self.embedder = None
        self.stats = Statistics()
        self.state = ModelState.READY
        self._batched = spec.max_batch_size > 0
        #: Requests answered per stage (event loop only).
        self.answered: Counter[str] = Counter({stage: 0 for stage in config.stages})

    @property
    def ready(self) -> bool:
        try:
            return all(self._lookup(stage).ready for stage in self.config.stages)
        except ApplianceError:
            return False

    def at(self, version: str) -> CascadeModel:
        """The cascade itself for "" or its one version; NOT_FOUND for any other."""
        if version in ("", str(CASCADE_VERSION)):
            return self
        raise ModelNotFoundError(
            f"cascade {quoted(self.name)} has no version {quoted(version)}; it answers at "
            f"version {CASCADE_VERSION} (its stages have versions of their own)"
        )

    async def infer(
        self,
        tensors: Sequence[RequestTensor],
        requested_outputs: Sequence[str] = (),
        deadline: float | None = None,
    ) -> dict[str, Array]:
        wanted = self._check_outputs(requested_outputs) or [s.name for s in self.spec.outputs]
        *cheaper, last = self.config.stages
        for stage in cheaper:
            outputs = await self._lookup(stage).infer(tensors, (), deadline)
            if self._confident(stage, outputs):
                self.answered[stage] += 1
                return {name: outputs[name] for name in wanted}
        outputs = await self._lookup(last).infer(tensors, wanted, deadline)
        self.answered[last] += 1
        return outputs

    def _confident(self, stage: str, outputs: Mapping[str, Array]) -> bool:
        scores = outputs.get(self.probabilities)
        if scores is None:  # a version activated since the cascade was checked
            raise NotReadyError(
                f"cascade {quoted(self.name)}: stage {quoted(stage)} no longer has the output "
                f"{quoted(self.probabilities)}; restart the daemon once the stages agree again"
            )
        return bool(top_confidence(scores).min() >= self.config.min_confidence)

    def drain(self, timeout: float | None = None) -> bool:
        return True  # nothing of its own to drain: the stages drain themselves


def build_cascades(
    cascades: Mapping[str, CascadeConfig], lookup: Lookup, models: Collection[str]
) -> dict[str, CascadeModel]:
    """Check every ``[cascades.NAME]`` against the loaded models; a ``ConfigError``
    names the cascade and what is wrong."""
    built: dict[str, CascadeModel] = {}
    for name, config in sorted(cascades.items()):
        if name in models:
            raise ConfigError(
                f"cascade {name!r}: a model of that name is in the repository; expected a "
                "name of its own"
            )
        built[name] = _build(name, config, lookup)
        log.info(
            "cascade %s: stages %s, min_confidence %.3f, probabilities from %r",
            name,
            " -> ".join(config.stages),
            config.min_confidence,
            built[name].probabilities,
        )
    return built


def _build(name: str, config: CascadeConfig, lookup: Lookup) -> CascadeModel:
    stages = [_stage(name, stage, lookup) for stage in config.stages]
    first = stages[0]
    for model in stages[1:]:
        if model.spec.inputs != first.spec.inputs:
            raise ConfigError(
                f"cascade {name!r}: stage {model.name!r} has inputs {model.spec.describe_inputs()}"
                f", stage {first.name!r} has {first.spec.describe_inputs()}; expected the same"
            )
    outputs = _common_outputs(stages)
    probabilities = probability_output(outputs, config.probabilities)
    if probabilities is None:
        names = [s.name for s in outputs] or "none"
        wanted = repr(config.probabilities) if config.probabilities else "'probabilities' or one"
        raise ConfigError(
            f"cascade {name!r}: expected a class-probability output ({wanted} FP32 output "
            f"shaped (batch, classes) in every stage), got common outputs {names}"
        )
    labels = {model.spec.labels for model in stages if model.spec.labels is not None}
    if len(labels) > 1:
        raise ConfigError(f"cascade {name!r}: the stages' labels differ: {sorted(labels)}")
    spec = ModelSpec(
        name=name,
        version=CASCADE_VERSION,
        inputs=first.spec.inputs,
        outputs=outputs,
        max_batch_size=min(model.spec.max_batch_size for model in stages),
        labels=next(iter(labels), None),
        platform=PLATFORM,
    )
    return CascadeModel(spec, config, probabilities, lookup, stages[-1])


def _stage(name: str, stage: str, lookup: Lookup) -> LoadedModel:
    try:
        return lookup(stage)
    except ApplianceError as exc:
        raise ConfigError(f"cascade {name!r}: stage {stage!r} does not serve: {exc}") from exc


def _common_outputs(stages: Sequence[LoadedModel]) -> tuple[TensorSpec, ...]:
    """The outputs of the first stage that every stage has, same datatype and shape."""
    rest = [set(model.spec.outputs) for model in stages[1:]]
    return tuple(s for s in stages[0].spec.outputs if all(s in other for other in rest))


__all__ = ["CASCADE_VERSION", "CascadeModel", "build_cascades"]
