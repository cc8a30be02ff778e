"""The quality loop's Prometheus families, read at scrape time.

``appliance_eval_metric{model,version,group}``: the latest site evaluation score of a
version (group ``(all)`` for all rows); ``appliance_live_accuracy{model,version,group}``:
the share of correct predictions among recent outcome reports, group ``""`` for all of a
version's reports (Prometheus reads an empty label as no label, so that series is
DESIGN.md's ``{model,version}``) and a group's name for the reports naming it;
``appliance_retrain_runs_total{model}``: retrain command runs started. Names are fixed
by DESIGN.md ("Quality loop"). Only scores and counts: no row, no label of a request.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from appliance.quality.feedback import Outcomes
from appliance.quality.gate import OVERALL
from appliance.quality.retrain import RetrainTrigger
from appliance.quality.site import SiteEvaluator

#: ``appliance_live_accuracy``'s group of all a version's reports: empty, so the series
#: is the one without a group to Prometheus.
ALL_REPORTS = ""


class QualityCollector:
    """A prometheus-client collector over the evaluator, the outcomes and the trigger."""

    def __init__(self, evaluator: SiteEvaluator, outcomes: Outcomes, trigger: RetrainTrigger):
        self._evaluator = evaluator
        self._outcomes = outcomes
        self._trigger = trigger

    def collect(self) -> Iterator[Metric]:
        evaluation = GaugeMetricFamily(
            "appliance_eval_metric",
            "Latest score of a model version on the site's evaluation data "
            '([models.NAME] eval_metric), overall (group "(all)") and per group.',
            labels=["model", "version", "group"],
        )
        for (name, version), scores in sorted(dict(self._evaluator.latest).items()):
            values = [(OVERALL, scores.overall)] + [(g, v) for g, (_, v) in scores.groups.items()]
            for group, value in values:
                if not math.isnan(value):
                    evaluation.add_metric([name, str(version), group], value)
        live = GaugeMetricFamily(
            "appliance_live_accuracy",
            "Share of correct predictions among a version's recent outcome reports, "
            'all of them (group "") and per group the reports named.',
            labels=["model", "version", "group"],
        )
        for name, version, accuracy, _ in self._outcomes.live_accuracy():
            live.add_metric([name, str(version), ALL_REPORTS], accuracy)
        for name, version, group, accuracy, _ in self._outcomes.group_accuracy():
            live.add_metric([name, str(version), group], accuracy)
        runs = CounterMetricFamily(
            "appliance_retrain_runs",
            "Runs of [models.NAME] retrain_command started.",
            labels=["model"],
        )
        for name, count in sorted(self._trigger.runs.items()):
            runs.add_metric([name], float(count))
        yield from (evaluation, live, runs)


__all__ = ["QualityCollector"]
