"""Picking tokens and deciding when to stop, from transformers' own pieces.

The warper chain is built in the order of ``GenerationMixin._get_logits_processor`` and stopping
uses transformers' ``EosTokenCriteria`` / ``StopStringCriteria``, so a seeded run samples and stops
exactly where ``model.generate`` would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import (
    LogitsProcessorList,
    MinPLogitsWarper,
    StoppingCriteriaList,
    StopStringCriteria,
    TemperatureLogitsWarper,
    TopHLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.generation.stopping_criteria import EosTokenCriteria

from lmms_vreason.core.settings import GenerationSettings


def logits_processors(settings: GenerationSettings) -> LogitsProcessorList:
    """The warpers ``generate`` would apply for these settings (empty when greedy)."""
    procs = LogitsProcessorList()
    if not settings.do_sample:
        return procs
    if settings.temperature != 1.0:
        procs.append(TemperatureLogitsWarper(settings.temperature))
    if settings.top_h is not None:
        procs.append(TopHLogitsWarper(top_h=settings.top_h))
    if settings.top_k is not None and settings.top_k != 0:
        procs.append(TopKLogitsWarper(top_k=settings.top_k, min_tokens_to_keep=1))
    if settings.top_p is not None and settings.top_p < 1.0:
        procs.append(TopPLogitsWarper(top_p=settings.top_p, min_tokens_to_keep=1))
    if settings.min_p is not None:
        procs.append(MinPLogitsWarper(min_p=settings.min_p, min_tokens_to_keep=1))
    return procs


class TokenSampler:
    """Picks the next token from raw logits: processors, then argmax or a multinomial draw.

    ``generators``: ``None`` draws from torch's global generator for the whole batch at once (what
    ``generate`` does, so seeded runs can be compared with it); a sequence gives every sample its
    own generator, so a sample's draw does not depend on which samples share its batch.
    """

    def __init__(
        self, settings: GenerationSettings, generators: Sequence[torch.Generator] | None = None
    ) -> None:
        self.settings = settings
        self.processors = logits_processors(settings)
        self.generators = generators

    def __call__(
        self, input_ids: torch.Tensor, logits: torch.Tensor, broken: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The next token per row; rows flagged ``broken`` (non-finite logits) get an arbitrary one.

        A draw needs a valid distribution even for a row the caller discards, so sampling replaces a
        broken row's logits first; greedy decoding needs no copy (argmax never fails).
        """
        if self.settings.do_sample and broken is not None:
            logits = logits.masked_fill(broken[:, None], 0.0)
        scores = self.processors(input_ids, logits) if self.processors else logits
        if not self.settings.do_sample:
            return torch.argmax(scores, dim=-1)
        probs = torch.softmax(scores, dim=-1)
        if self.generators is None:
            return torch.multinomial(probs, num_samples=1).squeeze(1)
        rows = [
            torch.multinomial(probs[b : b + 1], num_samples=1, generator=gen)
            for b, gen in enumerate(self.generators)
        ]
        return torch.cat(rows).squeeze(1)


def stopping_criteria(
    eos_token_ids: Sequence[int], until: Sequence[str] = (), tokenizer: Any = None
) -> StoppingCriteriaList:
    """EOS tokens and stop strings as transformers' criteria (per-sample ``[B]`` flags on the device).

    Called on the generated ids only (not the prompt), so a stop string can never be completed by
    the prompt's tail.
    """
    criteria = StoppingCriteriaList()
    if eos_token_ids:
        criteria.append(EosTokenCriteria(eos_token_id=list(eos_token_ids)))
    if until:
        if tokenizer is None:
            raise ValueError("stop strings need the tokenizer")
        criteria.append(StopStringCriteria(tokenizer=tokenizer, stop_strings=list(until)))
    return criteria


def cut_at_stop_strings(text: str, until: Sequence[str]) -> str:
    """``text`` up to the first occurrence of any stop string (lmms-eval's ``until`` semantics)."""
    ends = [i for i in (text.find(s) for s in until) if i >= 0]
    return text[: min(ends)] if ends else text
