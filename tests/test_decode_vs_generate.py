"""The decode loop against transformers' ``generate`` (the independent reference for the loop).

Run for every model family (``kit``): the loop and the V-Reason step are shared, only the
adapter's positions and prefill inputs differ, so ``generate`` checks each adapter.
"""

from __future__ import annotations

import pytest
import torch
from conftest import LogitRecorder, make_inputs, stop_when

from lmms_vreason.core.decode import decode
from lmms_vreason.core.sampling import cut_at_stop_strings, stopping_criteria
from lmms_vreason.core.settings import GenerationSettings, VReasonSettings
from lmms_vreason.models import adapter_for

N_NEW = 16


def _generate(model, inputs, **kwargs):
    out = model.generate(
        **inputs,
        max_new_tokens=N_NEW,
        eos_token_id=None,
        output_logits=True,
        return_dict_in_generate=True,
        **kwargs,
    )
    new = out.sequences[0, inputs["input_ids"].shape[1] :].tolist()
    return new, torch.stack([lg[0] for lg in out.logits])


def _ours(model, inputs, settings, vreason=None, generators=None):
    rec = LogitRecorder()
    out = decode(adapter_for(model), inputs, settings, vreason, probe=rec, generators=generators)
    return out, torch.stack([lg[0] for lg in rec.logits])


def test_greedy_equals_generate_tokens_and_logits(kit):
    ref_tokens, ref_logits = _generate(kit.model, kit.inputs, do_sample=False)
    out, logits = _ours(
        kit.model, kit.inputs, GenerationSettings(max_new_tokens=N_NEW), VReasonSettings(vreason=False)
    )
    assert out.sequences[0] == ref_tokens
    assert len(ref_tokens) == N_NEW
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=0)


def test_sampling_equals_generate_with_same_seed(kit):
    settings = GenerationSettings(do_sample=True, temperature=1.5, top_p=0.95, top_k=50, max_new_tokens=N_NEW)
    torch.manual_seed(123)
    ref_tokens, ref_logits = _generate(
        kit.model, kit.inputs, do_sample=True, temperature=1.5, top_p=0.95, top_k=50
    )
    torch.manual_seed(123)
    out, logits = _ours(kit.model, kit.inputs, settings, None)
    assert out.sequences[0] == ref_tokens
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=0)
    # A different seed must change the draw (the test would pass vacuously for a greedy-like sampler).
    torch.manual_seed(7)
    other, _ = _ours(kit.model, kit.inputs, settings, None)
    assert other.sequences[0] != ref_tokens


def test_controller_frozen_at_zero_equals_generate(kit, monkeypatch):
    """Every step runs the differentiable path (k=1) but ΔV never moves: logits must be bit-identical."""
    from lmms_vreason.core.optim import RowAdamW

    monkeypatch.setattr(RowAdamW, "step", lambda self, param, grad, update: None)
    ref_tokens, ref_logits = _generate(kit.model, kit.inputs, do_sample=False)
    out, logits = _ours(
        kit.model, kit.inputs, GenerationSettings(max_new_tokens=N_NEW), VReasonSettings(step_size=1)
    )
    assert int(out.stats.opt_steps[0]) == N_NEW - 1
    assert out.sequences[0] == ref_tokens
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=0)


def test_vreason_changes_logits_after_first_update(kit):
    """With a real update the logits must move from step k+1 on, and never before."""
    k = 2
    ref_tokens, ref_logits = _generate(kit.model, kit.inputs, do_sample=False)
    out, logits = _ours(
        kit.model,
        kit.inputs,
        GenerationSettings(max_new_tokens=N_NEW),
        VReasonSettings(step_size=k, lr=0.05),
    )
    torch.testing.assert_close(logits[:k], ref_logits[:k], rtol=0, atol=0)
    assert not torch.equal(logits[k], ref_logits[k])
    assert out.stats.optimized[0].nonzero().flatten().tolist() == [t - 1 for t in range(k, N_NEW + 1, k)]


@pytest.mark.parametrize("eos_step", [3])
def test_stops_at_eos_and_until(tiny_model, tiny_inputs, eos_step):
    ref_tokens, _ = _generate(tiny_model, tiny_inputs, do_sample=False)
    eos = ref_tokens[eos_step - 1]
    out = decode(
        adapter_for(tiny_model),
        tiny_inputs,
        GenerationSettings(max_new_tokens=N_NEW),
        stopping=stopping_criteria([eos]),
    )
    assert out.sequences[0] == ref_tokens[: ref_tokens.index(eos) + 1]
    stop_after = 5
    out = decode(
        adapter_for(tiny_model),
        tiny_inputs,
        GenerationSettings(max_new_tokens=N_NEW),
        stopping=stop_when(lambda ids: len(ids) >= stop_after),
    )
    assert out.sequences[0] == ref_tokens[:stop_after]


def test_stop_strings_stop_where_the_text_first_contains_them(tiny_model, tiny_inputs, tiny_processor):
    """``until`` through transformers' StopStringCriteria on the generated ids (never the prompt)."""
    tokenizer = tiny_processor.tokenizer
    ref_tokens, _ = _generate(tiny_model, tiny_inputs, do_sample=False)
    texts = [tokenizer.decode(ref_tokens[:j]) for j in range(len(ref_tokens) + 1)]
    # a stop string made of two generated tokens that decode cleanly (the small vocabulary is bytes)
    j = next(j for j in range(3, len(ref_tokens)) if "\ufffd" not in tokenizer.decode(ref_tokens[j - 2 : j]))
    stop = tokenizer.decode(ref_tokens[j - 2 : j])
    first = next(k for k, text in enumerate(texts) if stop in text)
    out = decode(
        adapter_for(tiny_model),
        tiny_inputs,
        GenerationSettings(max_new_tokens=N_NEW),
        stopping=stopping_criteria([], [stop], tokenizer),
    )
    assert out.sequences[0] == ref_tokens[:first]
    assert cut_at_stop_strings(tokenizer.decode(out.sequences[0]), [stop]) == texts[first].split(stop)[0]


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_greedy_equals_generate_for_kernels_dtypes_and_padded_batches(
    tiny_model_dir, tiny_processor, attn, dtype
):
    """The eager loop attends over exactly the slots a dynamic cache holds, unmasked where nothing is
    masked: bit-identical logits for either attention kernel, in bfloat16 too, on a left-padded batch."""
    from conftest import load_model, make_batch_inputs

    model = load_model(tiny_model_dir, dtype, attn=attn)
    batch = make_batch_inputs(
        tiny_processor, [{"frames": 4, "seed": 1}, {"frames": 8, "size": 84, "seed": 2}]
    )
    assert batch["attention_mask"][:, 0].tolist() == [0, 1]  # left-padded
    single = make_inputs(tiny_processor, frames=8, size=84, seed=2)
    for inputs in (batch, single):
        inputs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
        out = model.generate(
            **inputs,
            max_new_tokens=8,
            eos_token_id=None,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
        rec = LogitRecorder()
        ours = decode(adapter_for(model), inputs, GenerationSettings(max_new_tokens=8), None, probe=rec)
        want = out.sequences[:, inputs["input_ids"].shape[1] :].tolist()
        assert ours.sequences == want
        torch.testing.assert_close(
            torch.stack(rec.logits, 1), torch.stack(out.logits, 1).float(), rtol=0, atol=0
        )
