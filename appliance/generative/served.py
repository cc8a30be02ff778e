"""The daemon's generative models by name, as the OpenAI routes look them up.

A thin view over the model manager: the version that answers is the model's default
one, exactly as for V2 requests, so an activation or rollback switches both front doors
at once. Implements ``appliance.http.generative.GenerativeModels``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.clip import quoted
from appliance.errors import ApplianceError, ModelNotFoundError
from appliance.generative.model import GenerativeVersion

if TYPE_CHECKING:
    from appliance.manager import ModelManager


class ServedGenerative:
    def __init__(self, manager: ModelManager):
        self._manager = manager

    def get(self, name: str) -> GenerativeVersion:
        model = self._manager.get(name)  # NOT_FOUND naming what is served, or UNAVAILABLE
        if not isinstance(model, GenerativeVersion):
            served = ", ".join(self.names()) or "none"
            raise ModelNotFoundError(
                f"model {quoted(name)} is not a text-generation model; generative models "
                f"served: {served}"
            )
        return model

    def names(self) -> list[str]:
        found = []
        for name in self._manager.names():
            try:
                model = self._manager.get(name)
            except ApplianceError:  # no active version right now
                continue
            if isinstance(model, GenerativeVersion):
                found.append(name)
        return found


__all__ = ["ServedGenerative"]
