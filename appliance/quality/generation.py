"""Site evaluation of a generative model: prompts with reference answers, scored greedily.

Owns the generative evaluation data and its scores. The file (CSV or Parquet) holds a
``prompt`` and a ``reference`` column and an optional ``group``. Each prompt is answered
by the model with temperature 0 (greedy, so a version always gives the same answer), one
prompt at a time so the evaluation takes one sequence of the engine's batch at most, and
scored against its reference, as SQuAD scores answers (both texts lower-cased, without
punctuation and the articles a/an/the, split on white space):

- ``exact_match``: 1 when the normalised answer equals the normalised reference;
- ``token_f1``: F1 of the answer's tokens against the reference's (a multiset overlap:
  precision over the answer's tokens, recall over the reference's).

A version's score is the mean over its rows, overall and per group. It is written
against ``appliance.http.generative.GenerativeModel``, the protocol the serving engine
(``appliance.generative.GenerativeVersion``) implements; the site evaluation gate
(``appliance.quality.site``) passes it the loaded versions. Prompts, answers and
references are patient data and are never logged.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from appliance.errors import ConfigError
from appliance.generative.types import SamplingOptions
from appliance.quality.evaluation import Scores, group_column, read_columns, score_rows

if TYPE_CHECKING:  # the protocol only: the quality loop does not import the HTTP port
    from appliance.http.generative import GenerativeModel

Array = np.ndarray[Any, Any]

PROMPT, REFERENCE = "prompt", "reference"
#: Tokens an answer may have: references are short answers, not essays.
DEFAULT_MAX_TOKENS = 64

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


@dataclass(frozen=True)
class PromptData:
    prompts: tuple[str, ...]
    references: tuple[str, ...]
    groups: tuple[str, ...]


def read_prompt_data(path: Path) -> PromptData:
    """Read a ``prompt``, ``reference`` (and optional ``group``) file."""
    columns = read_columns(path, (PROMPT, REFERENCE))
    prompts = tuple(str(v) for v in columns[PROMPT])
    if not all(prompts):
        raise ConfigError(f"eval_data {path}: every {PROMPT!r} must be non-empty")
    references = tuple(str(v) for v in columns[REFERENCE])
    return PromptData(prompts, references, group_column(columns))


def normalized_tokens(text: str) -> list[str]:
    """SQuAD's answer normalisation, split into tokens."""
    text = text.lower().translate(_PUNCTUATION)
    return _ARTICLES.sub(" ", text).split()


def _exact(reference: str, answer: str) -> float:
    return float(normalized_tokens(reference) == normalized_tokens(answer))


def _f1(reference: str, answer: str) -> float:
    truth, said = normalized_tokens(reference), normalized_tokens(answer)
    if not truth or not said:
        return float(truth == said)  # both empty: a match; one empty: none
    common = sum((Counter(truth) & Counter(said)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(said), common / len(truth)
    return 2 * precision * recall / (precision + recall)


def _mean_of(row: Callable[[str, str], float]) -> Callable[[Array, Array], float]:
    def mean(references: Array, answers: Array) -> float:
        return float(np.mean([row(r, a) for r, a in zip(references, answers, strict=True)]))

    return mean


#: Metrics of a generative model: (references, answers) -> mean per-row score.
GENERATION_METRICS: Mapping[str, Callable[[Array, Array], float]] = {
    "exact_match": _mean_of(_exact),
    "token_f1": _mean_of(_f1),
}


async def evaluate_generation(
    model: GenerativeModel,
    data: PromptData,
    metric: str,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> Scores:
    """Answer every prompt greedily, one at a time; score the answers against references."""
    if metric not in GENERATION_METRICS:
        raise ConfigError(
            f"model {model.name!r}: eval_metric {metric!r} does not score a generative "
            f"model; expected one of {sorted(GENERATION_METRICS)}"
        )
    options = SamplingOptions(max_tokens=max_tokens, temperature=0.0)
    answers = [(await model.generate(p, options, None)).text for p in data.prompts]
    return score_answers(metric, data, answers)


def score_answers(metric: str, data: PromptData, answers: Sequence[str]) -> Scores:
    """``metric`` of ``answers`` (one per prompt) over all rows and per group."""
    references = np.asarray(data.references, dtype=object)  # (rows,) texts
    said = np.asarray(list(answers), dtype=object)
    return score_rows(metric, GENERATION_METRICS[metric], references, said, data.groups)


__all__ = [
    "DEFAULT_MAX_TOKENS",
    "GENERATION_METRICS",
    "PROMPT",
    "REFERENCE",
    "PromptData",
    "evaluate_generation",
    "normalized_tokens",
    "read_prompt_data",
    "score_answers",
]
