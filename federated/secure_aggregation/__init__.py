"""SecAgg+ (run config ``secure-aggregation = true``): the app's only use of flwr's legacy API.

In flwr 1.41 secure aggregation exists only as the legacy ``SecAggPlusWorkflow`` (server)
and ``secaggplus_mod`` (site), which speak the old ``FitIns``/``FitRes`` records. This
package keeps that dialect in here and translates at both edges, so the rest of the app
stays on the Message API:

    site.py    secure_aggregation_mod   routes SecAgg+ messages into ``secaggplus_mod``;
                                        in its masked stage it turns ``FitIns`` into our
                                        train message, runs the usual train handler and
                                        answers a ``FitRes`` holding the update
                                        (new - global)
    server.py  run_secure_rounds        the legacy ``DefaultWorkflow`` with SecAgg+ as its
                                        fit step; between rounds, evaluation runs through
                                        the Message-API strategy as in every other run

The two halves import nothing from each other: a site never loads flwr's server code.

Sites send updates, not weights: SecAgg+ clips values to ``[-8, 8]`` before quantizing,
which weights (and the model's standardisation buffers) exceed, while one round's change
stays well inside. The server adds the unmasked weighted mean of the updates to the
global model. It never sees one site's update, so robust aggregation, server-side DP and
update encodings are refused with SecAgg+ (``federated.settings``).
"""

CLIPPING_RANGE = 8.0  # SecAgg+'s quantization range; values beyond it are clipped

__all__ = ["CLIPPING_RANGE"]
