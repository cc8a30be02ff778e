"""The quality loop: what a site checks before a version serves, and how it notices decline.

``site`` evaluates versions on the box's own labelled data (``evaluation``: reading and
metrics) and ``gate`` compares a candidate with the serving version; ``feedback`` keeps
predicted classes per request id and turns reported outcomes into live accuracy;
``retrain`` runs the configured retraining command when live accuracy falls or drift
persists; ``metrics`` exports all of it to Prometheus. ``generation`` scores a generative
model's greedy answers against references (token F1, exact match), which ``site`` runs
for a ``text-generation`` model on its loaded versions.
"""

from appliance.quality.evaluation import EvalData, Scores, read_eval_data, score
from appliance.quality.feedback import Outcomes, Verdict
from appliance.quality.gate import OVERALL, GateReport, GateRow, compare
from appliance.quality.metrics import QualityCollector
from appliance.quality.retrain import DriftWatch, RetrainTrigger
from appliance.quality.site import SiteEvaluator

__all__ = [
    "OVERALL",
    "DriftWatch",
    "EvalData",
    "GateReport",
    "GateRow",
    "Outcomes",
    "QualityCollector",
    "RetrainTrigger",
    "Scores",
    "SiteEvaluator",
    "Verdict",
    "compare",
    "read_eval_data",
    "score",
]
