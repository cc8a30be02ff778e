"""The federated app's error tree: every failure a site operator or run owner can meet.

Site-side errors are raised inside the ClientApp and answered as an error reply by its
outermost mod (``federated.mods.error_reply_mod``), so the ServerApp sees the message
(never the site's data) and the round goes on with the other sites. Messages say what
was expected and what arrived, and never carry feature values or labels beyond the
offending label itself.

    FederatedError                      INTERNAL
    ├── SettingsError                   INVALID_ARGUMENT  (bad run or node config value)
    ├── SiteDataError                   FAILED_PRECONDITION (site data unusable)
    │   ├── SiteDataMissingError        NOT_FOUND         (no file at data-path)
    │   ├── SiteDataFormatError         INVALID_ARGUMENT  (columns, shapes, dtypes)
    │   └── UnknownLabelError           INVALID_ARGUMENT  (label the model does not know)
    ├── UpdateFormatError               INVALID_ARGUMENT  (a reply's arrays do not decode)
    ├── PrivacyBudgetError              FAILED_PRECONDITION (no noise reaches the target ε)
    ├── NotEnoughSitesError             UNAVAILABLE       (too few sites replied)
    └── ExportError                     INTERNAL          (final model did not export)

Every class carries an ``appliance.errors.Status``, the shape all three packages' error
roots share (``StatusError``, whose exit codes come from one table); the site names it
in the one log line it writes for an error reply (``federated._records.error_reply``).
"""

from __future__ import annotations

from appliance.errors import Status, StatusError


class FederatedError(StatusError):
    """Root of every error the federated app raises on purpose."""


class SettingsError(FederatedError):
    """A run config or node config value is missing, of the wrong type, or out of range."""

    status = Status.INVALID_ARGUMENT


class SiteDataError(FederatedError):
    """The site's local data cannot be used for training."""

    status = Status.FAILED_PRECONDITION


class SiteDataMissingError(SiteDataError):
    """Nothing (or nothing readable) at the node config's ``data-path``."""

    status = Status.NOT_FOUND


class SiteDataFormatError(SiteDataError):
    """The data is there but its columns, shapes or dtypes are not what the model needs."""

    status = Status.INVALID_ARGUMENT


class UnknownLabelError(SiteDataError):
    """A label in the site's data is not one of the run's ``labels``."""

    status = Status.INVALID_ARGUMENT


class UpdateFormatError(FederatedError):
    """A site's reply carries arrays that do not decode against the global model."""

    status = Status.INVALID_ARGUMENT


class PrivacyBudgetError(FederatedError):
    """The requested (ε, δ) cannot be met with any noise multiplier we search."""

    status = Status.FAILED_PRECONDITION


class NotEnoughSitesError(FederatedError):
    """Fewer sites connected or replied than the run's minimum."""

    status = Status.UNAVAILABLE


class ExportError(FederatedError):
    """The final global model could not be written or did not match its ONNX export."""

    status = Status.INTERNAL


__all__ = [
    "ExportError",
    "FederatedError",
    "NotEnoughSitesError",
    "PrivacyBudgetError",
    "SettingsError",
    "SiteDataError",
    "SiteDataFormatError",
    "SiteDataMissingError",
    "UnknownLabelError",
    "UpdateFormatError",
]
