"""What may load and what serves: the state record decides, and every load is verified.

Only an audited activation (push ``--activate``, ``activate``, ``rollback``) makes a
version active, and a restart serves what the state record says, never simply the
highest number on disk. So for each model the versions that may answer unversioned
requests are, in order of preference:

- when the record names an active version: that one, then the earlier active ones
  (most recent first), so a version that fails to load falls back to the last good one;
- when it names none: the versions no push installed (Triton-style folders an operator
  put there), highest first. A version pushed without ``--activate`` never serves by
  default, before or after a restart.

Every version folder is verified when it loads, not only when it was pushed: a pushed
version must still carry its signature by a trusted key over every file (a
``model.onnx`` replaced on disk is refused, and the refusal logged and audited as
``load.refused``); a Triton-style folder must be signed too when ``[signing]
require_signed`` is set, and its external data must stay inside it either way. The
embedded default model ships inside the installed code (root-owned, checked by the
package manager like the daemon's own code), so it is exempt.

The embedded model's root is served beside the repository while the repository has
no version that may serve, or while the record names one of its versions (an operator
rolled back to it).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from pathlib import Path

from appliance.errors import PackageError, SignatureError
from appliance.lifecycle.audit import AuditSink
from appliance.lifecycle.state import StateStore
from appliance.package import SIGNATURE_NAME, check_unsigned_folder, verify_model_folder
from appliance.repository import EMBEDDED_ROOT, Repository, VersionSource

log = logging.getLogger(__name__)


class ServingPolicy:
    """The manager's ``VersionPolicy`` for a box with a lifecycle state record."""

    def __init__(
        self,
        state: StateStore,
        audit: AuditSink,
        *,
        repository: Path,
        trusted_keys: Sequence[Path],
        require_signed: bool,
    ):
        self._state = state
        self._audit = audit
        self._root = repository
        self._trusted_keys = list(trusted_keys)
        self._require_signed = require_signed

    def candidates(self, name: str, available: Collection[int]) -> list[int]:
        """Versions that may serve ``name`` by default, most preferred first."""
        activated = self._state.activated_versions(name)
        if activated:
            return [v for v in activated if v in available]
        return sorted((v for v in available if not self._state.installed(name, v)), reverse=True)

    def roots(self, serve_default_model: bool) -> list[Path]:
        """The repository, plus the embedded model's root when it is to be served."""
        roots = [self._root]
        if serve_default_model and self._wants_embedded():
            roots.append(EMBEDDED_ROOT)
        return roots

    def _wants_embedded(self) -> bool:
        configured = Repository([self._root]).models()
        if not any(self.candidates(n, set(v)) for n, v in configured.items()):
            return True
        for name, versions in Repository([EMBEDDED_ROOT]).models().items():
            only_embedded = set(versions) - set(configured.get(name, {}))
            if only_embedded & set(self._state.activated_versions(name)):
                return True
        return False

    def verify(self, source: VersionSource) -> None:
        """Blocking: refuse a folder whose files are not what may load (``PackageError``)."""
        folder = source.folder
        if folder.is_relative_to(EMBEDDED_ROOT):
            return
        try:
            self._verify(source, folder)
        except PackageError as exc:
            raise type(exc)(f"model {source.name!r} version {source.version}: {exc}") from exc

    def _verify(self, source: VersionSource, folder: Path) -> None:
        pushed = self._state.installed(source.name, source.version)
        if not (folder / SIGNATURE_NAME).is_file():
            if pushed or self._require_signed:
                why = "it was pushed as a signed package" if pushed else "signing.require_signed"
                raise SignatureError(
                    f"unsigned folder refused ({why}); expected {SIGNATURE_NAME} made with "
                    "a trusted key"
                )
            check_unsigned_folder(folder)
            return
        verify_model_folder(folder, self._trusted_keys)

    def refused(self, source: VersionSource, reason: str) -> None:
        """A version failed its verification at load: audited, and it does not serve."""
        log.error("model %s version %d refused at load: %s", source.name, source.version, reason)
        self._audit.record(
            "load.refused",
            caller="daemon",
            model=source.name,
            version=source.version,
            outcome="refused",
            reason=reason,
        )


__all__ = ["ServingPolicy"]
