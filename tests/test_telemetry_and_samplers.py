"""Telemetry values against independent computations; min-p / top-H sampling combined with V-Reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmms_vreason.core.decode import decode
from lmms_vreason.core.sampling import logits_processors
from lmms_vreason.core.settings import GenerationSettings, VReasonSettings
from lmms_vreason.models.qwen2_5_vl import Qwen2_5_VLAdapter


class LogitRecorder:
    def __init__(self) -> None:
        self.logits: list[torch.Tensor] = []

    def on_logits(self, step, logits) -> None:
        self.logits.append(logits[0].double().numpy())

    def on_gradient(self, *args) -> None:
        pass


def _numpy_entropy(logits: np.ndarray) -> float:
    z = logits - logits.max()
    p = np.exp(z) / np.exp(z).sum()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


@pytest.mark.parametrize("vreason", [None, VReasonSettings(step_size=2, lr=0.05)])
def test_recorded_entropy_and_ema_equal_independent_computation(tiny_model, tiny_inputs, vreason):
    rec = LogitRecorder()
    out = decode(
        Qwen2_5_VLAdapter(tiny_model),
        tiny_inputs,
        GenerationSettings(max_new_tokens=10),
        vreason,
        track_entropy=True,
        probe=rec,
    )
    expected = np.array([_numpy_entropy(lg) for lg in rec.logits])
    np.testing.assert_allclose(out.stats.entropy[0].numpy(), expected, rtol=1e-5)
    ema = [expected[0]]
    for h in expected[1:]:
        ema.append(0.98 * ema[-1] + 0.02 * h)
    np.testing.assert_allclose(out.stats.ema[0].numpy(), np.array(ema), rtol=1e-5)


@pytest.mark.parametrize("sampler", [{"min_p": 0.1}, {"top_h": 0.4}])
@pytest.mark.parametrize("lite", [False, True])
def test_min_p_and_top_h_run_with_vreason_on_raw_entropy(tiny_model, tiny_inputs, sampler, lite):
    settings = GenerationSettings(do_sample=True, temperature=0.3, max_new_tokens=12, **sampler)
    rec = LogitRecorder()
    gen = torch.Generator().manual_seed(0)
    out = decode(
        Qwen2_5_VLAdapter(tiny_model),
        tiny_inputs,
        settings,
        VReasonSettings(step_size=2, lite=lite),
        generators=[gen],
        probe=rec,
    )
    assert len(out.sequences[0]) == 12 and int(out.stats.opt_steps[0]) == 6
    # The objective sees the raw distribution, not the warped one (docs/method.md §1.3).
    np.testing.assert_allclose(
        out.stats.entropy[0].numpy(), [_numpy_entropy(lg) for lg in rec.logits], rtol=1e-5
    )
    warped = logits_processors(settings)(None, torch.from_numpy(rec.logits[0])[None].float())
    assert _numpy_entropy(warped[0].double().numpy()) < out.stats.entropy[0, 0].item() - 0.1
