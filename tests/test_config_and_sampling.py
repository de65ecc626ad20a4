"""Model-argument validation, generation-kwarg handling, and the sampler chain against transformers'."""

from __future__ import annotations

import re

import pytest
import torch
from transformers import GenerationConfig

from lmms_vreason.core.sampling import TokenSampler, logits_processors
from lmms_vreason.core.settings import GenerationSettings, VReasonSettings
from lmms_vreason.lmms.args import (
    ArgumentError,
    merge_host_config,
    parse_model_args,
    valid_argument_names,
)


def test_unknown_model_argument_names_the_valid_ones():
    with pytest.raises(ArgumentError) as err:
        parse_model_args({"pretrained": "x", "step_sise": 4})
    msg = str(err.value)
    assert "step_sise" in msg
    for name in ("step_size", "lr", "objective", "norm_scope", "keep_ratio", "max_num_frames"):
        assert name in msg
    assert set(valid_argument_names()) >= {
        "vreason",
        "ema_beta",
        "grad_clip",
        "lite",
        "prune_only",
        "nframes",
    }


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"lr": "fast"}, "lr='fast'"),
        ({"step_size": 0}, "step_size"),
        ({"objective": "maximise"}, "objective"),
        ({"norm_scope": "layer"}, "norm_scope"),
        ({"keep_ratio": 0}, "keep_ratio"),
        ({"vreason": "maybe"}, "vreason"),
        ({"prune_only": True}, "prune_only"),
        ({"prune_only": True, "vreason": False}, "lite"),
        ({"max_frames": 16, "max_num_frames": 32}, "same thing"),
        (
            {"nframes": 16, "max_num_frames": 32},
            "nframes (a fixed frame count) cannot be combined with max_num_frames",
        ),
        ({"nframes": 16, "fps": 1.0, "min_frames": 2}, "cannot be combined with fps, min_frames"),
        ({"nframes": 7}, "nframes must be even"),
        ({"min_frames": 40}, "min_frames (40) > max_frames (32)"),
        ({"min_pixels": 200704}, "min_pixels (200704) > max_pixels (100352)"),
        ({"dtype": "int8"}, "dtype"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_ill_typed_or_impossible_arguments_fail(raw, fragment):
    with pytest.raises(ArgumentError, match=re.escape(fragment)):
        parse_model_args(raw)


def test_arguments_are_typed_from_strings_and_aliases_resolve():
    args = parse_model_args(
        {"vreason": "false", "lite": "true", "prune_only": 1, "keep_ratio": "0.25", "max_num_frames": 16}
    )
    assert args.vreason_settings == VReasonSettings(
        vreason=False, lite=True, prune_only=True, keep_ratio=0.25
    )
    assert args.max_frames == 16 and args.nframes is None
    assert parse_model_args({"fps": "1.0"}).fps == 1.0
    assert parse_model_args({"nframes": "8"}).frame_settings().nframes == 8
    assert parse_model_args({"max_batch_size": None}).batch_size == 1


def test_gen_kwargs_are_honoured_and_unknown_ones_rejected():
    s = GenerationSettings.from_gen_kwargs(
        {"temperature": 0.1, "top_p": 0.001, "max_new_tokens": 1024, "do_sample": True, "until": "</answer>"}
    )
    assert (s.do_sample, s.temperature, s.top_p, s.max_new_tokens, s.until) == (
        True,
        0.1,
        0.001,
        1024,
        ("</answer>",),
    )
    greedy = GenerationSettings.from_gen_kwargs({"temperature": 0, "until": []})
    assert not greedy.do_sample and greedy.until == ()
    assert GenerationSettings.from_gen_kwargs({"top_k": 5, "do_sample": True}).top_k == 5
    with pytest.raises(ValueError, match="repetition_penalty"):
        GenerationSettings.from_gen_kwargs({"repetition_penalty": 1.1})
    with pytest.raises(ValueError, match="num_beams"):
        GenerationSettings.from_gen_kwargs({"num_beams": 4})
    with pytest.raises(ValueError, match="temperature='hot' is not a number"):
        GenerationSettings.from_gen_kwargs({"temperature": "hot"})
    with pytest.raises(ValueError, match="contradictory"):
        GenerationSettings.from_gen_kwargs({"temperature": 0, "do_sample": True})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": 0.1, "top_p": 0.001},
        {"temperature": 0.3, "min_p": 0.1},
        {"temperature": 1.0, "top_h": 0.4},
        {"temperature": 0.7, "top_k": 20, "top_p": 0.9, "min_p": 0.05},
    ],
)
def test_sampler_chain_equals_transformers(tiny_model, kwargs):
    ours = logits_processors(GenerationSettings(do_sample=True, **kwargs))
    theirs = tiny_model._get_logits_processor(
        generation_config=GenerationConfig(do_sample=True, **kwargs), input_ids_seq_length=1, device="cpu"
    )
    assert [type(p) for p in ours] == [type(p) for p in theirs]
    torch.manual_seed(0)
    logits = torch.randn(3, 300) * 4
    ids = torch.zeros(3, 1, dtype=torch.long)
    torch.testing.assert_close(ours(ids, logits.clone()), theirs(ids, logits.clone()), rtol=0, atol=0)


def test_seeded_sampler_is_reproducible():
    logits = torch.randn(1, 50)
    settings = GenerationSettings(do_sample=True, temperature=1.0)
    draw = [TokenSampler(settings, [torch.Generator().manual_seed(5)])(None, logits).item() for _ in range(2)]
    assert draw[0] == draw[1]
    many = {
        TokenSampler(settings, [torch.Generator().manual_seed(s)])(None, logits).item() for s in range(20)
    }
    assert len(many) > 1


def test_model_args_repeating_a_cli_option_name_the_option():
    from lmms_vreason.lmms.backend import Qwen2_5_VL_VReason

    with pytest.raises(ArgumentError, match="batch_size.*--batch_size"):
        Qwen2_5_VL_VReason.create_from_arg_string(
            "pretrained=x,batch_size=2", {"batch_size": 1, "max_batch_size": None, "device": None}
        )
    with pytest.raises(ArgumentError, match="device.*--device"):
        Qwen2_5_VL_VReason.create_from_arg_string("device=cpu", {"device": "cuda"})
    merged = merge_host_config({"pretrained": "x", "device": "cpu"}, {"batch_size": 4, "device": None})
    assert merged == {"pretrained": "x", "device": "cpu", "batch_size": 4}
