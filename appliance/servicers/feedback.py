"""``appliance.feedback.v1.Feedback``: outcome reports on the inference port, thin over
``appliance.quality.Outcomes``.

A client reports the true label of a request it sent earlier with an ``id``. The same
layers as every inference RPC run around it (error boundary, observer, gate with the
``infer`` role, limits); errors are the boundary's to answer: an id the box keeps no
prediction for is NOT_FOUND, a label the package does not have INVALID_ARGUMENT. The
service has one message pair, so its conversion (``verdict_to_proto``) lives here.
"""

from __future__ import annotations

from typing import Any

import grpc

from appliance._proto import feedback_pb2 as pb
from appliance._proto import feedback_pb2_grpc as pb_grpc
from appliance.quality import Outcomes, Verdict

Context = grpc.aio.ServicerContext[Any, Any]


class FeedbackServicer(pb_grpc.FeedbackServicer):
    def __init__(self, outcomes: Outcomes):
        self._outcomes = outcomes

    async def Report(self, request: pb.ReportRequest, context: Context) -> pb.ReportResponse:
        verdict = self._outcomes.report(
            request.model_name, request.id, request.label, request.group
        )
        return verdict_to_proto(verdict)


def verdict_to_proto(verdict: Verdict) -> pb.ReportResponse:
    return pb.ReportResponse(
        model_name=verdict.model,
        model_version=verdict.version,
        correct=verdict.correct,
        live_accuracy=verdict.live_accuracy,
        reports=verdict.reports,
    )


__all__ = ["FeedbackServicer", "verdict_to_proto"]
