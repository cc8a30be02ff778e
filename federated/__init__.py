"""Federated training as a Flower app: sites train on local data and send only updates.

The folder shows the parts: ``client_app`` and ``server_app`` (the Flower entry points
named in ``federated/pyproject.toml``), ``settings`` (the run config, typed),
``data`` (site data and its validation), ``privacy`` (RDP accounting), ``encoding`` and
``mods`` (compressed updates, and the outermost mod that answers a site's errors),
``protocol`` (the record keys both sides share), ``strategy`` (robust aggregation,
server-side DP, audit), ``secure_aggregation`` (SecAgg+, the app's only use of flwr's
legacy API), ``export`` (the final ONNX model) and ``errors``. Importing this package is
cheap: Flower and torch load in the modules that use them.
"""

from federated.errors import FederatedError

__all__ = ["FederatedError"]
