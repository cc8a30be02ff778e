"""Stop strings on streamed text: cut at the first match, hold back a possible start.

A stop string may arrive split over several pieces ("disch" + "arge"), so text that
could be the beginning of one is held back until the next piece settles it; the held
text is released at the end when no stop string matched. The stop string itself is not
part of the output (OpenAI's and vLLM's rule).
"""

from __future__ import annotations

from collections.abc import Sequence


class StopScanner:
    def __init__(self, stops: Sequence[str]):
        self._stops = tuple(s for s in stops if s)
        self._held = ""

    def feed(self, piece: str) -> tuple[str, bool]:
        """The text that may be shown now, and whether a stop string matched."""
        text = self._held + piece
        cut = min((i for s in self._stops if (i := text.find(s)) >= 0), default=-1)
        if cut >= 0:
            self._held = ""
            return text[:cut], True
        keep = self._possible_start(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held

    def _possible_start(self, text: str) -> int:
        """Length of the longest tail of ``text`` that begins some stop string."""
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if stop.startswith(text[-size:]):
                    longest = size
                    break
        return longest


__all__ = ["StopScanner"]
