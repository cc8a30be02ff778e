"""The routing metric families, built at scrape time from the manager's routing state.

``appliance_shadow_agreement_ratio{model,version}`` (share of compared rows on which the
candidate agreed with the serving version; absent until a row is compared),
``appliance_shadow_requests_total{model,version,outcome}`` (copied, failed, skipped) and
``appliance_cascade_requests_total{model,stage}`` (requests each stage answered).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from appliance.routing.cascade import CascadeModel
from appliance.routing.shadow import ShadowTraffic


class RoutingCollector:
    def __init__(self, shadows: ShadowTraffic, cascades: Callable[[], Mapping[str, CascadeModel]]):
        self._shadows = shadows
        self._cascades = cascades

    def collect(self) -> Iterator[Metric]:
        shadows = self._shadows.all()
        ratio = GaugeMetricFamily(
            "appliance_shadow_agreement_ratio",
            "Share of compared rows on which the shadowed candidate agreed with the serving "
            "version (same top class; else cosine >= 0.99).",
            labels=["model", "version"],
        )
        copies = CounterMetricFamily(
            "appliance_shadow_requests",
            "Requests copied to a shadowed candidate, by outcome: copied, failed (the "
            "candidate did not answer), skipped (not copied).",
            labels=["model", "version", "outcome"],
        )
        for s in shadows:
            labels = [s.name, str(s.version)]
            if s.agreement is not None:
                ratio.add_metric(labels, s.agreement)
            copies.add_metric([*labels, "copied"], s.requests)
            copies.add_metric([*labels, "failed"], s.failures)
            copies.add_metric([*labels, "skipped"], s.skipped)
        yield ratio
        yield copies
        stages = CounterMetricFamily(
            "appliance_cascade_requests",
            "Requests to a cascade by the stage that answered them.",
            labels=["model", "stage"],
        )
        for name, cascade in sorted(self._cascades().items()):
            for stage, count in cascade.answered.items():
                stages.add_metric([name, stage], count)
        yield stages


__all__ = ["RoutingCollector"]
