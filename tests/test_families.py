"""Model families: one backend and one loop, a description and an adapter per family.

The decode-loop references (``generate``, float64 autograd, masked attention, batch vs alone) run per
family in their own test modules through the ``kit`` fixture; this module checks the wiring: every
family's backend has the same arguments, lmms-eval registers all of them from the one entry point,
the right adapter is picked, a checkpoint of the wrong family is refused before it loads, and the
Qwen3-VL media knobs reach its processor (timestamps from the video's real frame rate).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_video, tiny_backend, video_chat
from lmms_eval.protocol import ChatMessages

from lmms_vreason.experiments.configs import MODEL_ARG_VALIDATORS, config_from_mapping
from lmms_vreason.lmms.args import ArgumentError, BackendArgs, args_schema, parse_model_args
from lmms_vreason.lmms.plugin import CHAT_CLASS_PATHS, manifests
from lmms_vreason.models import FAMILIES, adapter_for, family_named, family_of_backend
from lmms_vreason.testing.fixtures import FPS, write_video

BACKENDS = [family.backend for family in FAMILIES.values()]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_takes_the_same_arguments_and_defaults_but_the_checkpoint(backend):
    family = next(f for f in FAMILIES.values() if f.backend == backend)
    args = parse_model_args({}, backend=backend)
    assert args.pretrained == family.default_pretrained
    assert args.model_dump(exclude={"pretrained"}) == BackendArgs().model_dump(exclude={"pretrained"})
    assert list(args_schema(backend).model_fields) == list(BackendArgs.model_fields)
    with pytest.raises(ArgumentError, match=f"unknown model argument\\(s\\) stepsize for {backend}; valid: "):
        parse_model_args({"stepsize": 4}, backend=backend)
    assert MODEL_ARG_VALIDATORS[backend]({"vreason": "false"}).vreason is False


def test_defaults_per_backend_and_unknown_backend():
    assert parse_model_args({}, "qwen3_vl_vreason").pretrained == "Qwen/Qwen3-VL-8B-Instruct"
    assert parse_model_args({}).pretrained == "Qwen/Qwen2.5-VL-7B-Instruct"
    with pytest.raises(ArgumentError, match="unknown V-Reason backend 'qwen4_vl_vreason'; valid: qwen2_5_vl"):
        parse_model_args({}, "qwen4_vl_vreason")


def test_a_config_may_name_a_family_backend():
    config = config_from_mapping(
        {
            "name": "q3",
            "reproduces": "Extension: Qwen3-VL",
            "model": "qwen3_vl_vreason",
            "model_args": {"lite": True},
            "tasks": ["mmvu"],
        }
    )
    assert config.backend_args.pretrained == "Qwen/Qwen3-VL-8B-Instruct" and config.backend_args.lite


def test_lmms_eval_registers_every_family_backend_from_the_one_entry_point():
    import importlib

    from lmms_eval.models import get_model

    assert [m.model_id for m in manifests()] == BACKENDS == list(CHAT_CLASS_PATHS)
    for backend in BACKENDS:
        cls = get_model(backend)  # through lmms-eval's registry (entry point -> manifests())
        module, name = CHAT_CLASS_PATHS[backend].rsplit(".", 1)
        assert cls is getattr(importlib.import_module(module), name)
        assert cls.family.backend == backend and cls.is_simple is False


def test_adapter_follows_the_model_type(tiny_kits):
    for family in ("qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe"):
        adapter = adapter_for(tiny_kits[family].model)
        assert type(adapter) is family_named(family).adapter_class()
    assert "second_per_grid_ts" not in family_named("qwen3_vl").adapter_class().prefill_only_inputs

    class Config:
        model_type = "llava"

    class Model:
        config = Config()

    with pytest.raises(ValueError, match="no V-Reason support for model_type 'llava'; supported: qwen2_5_vl"):
        adapter_for(Model())


def test_a_checkpoint_of_another_family_is_refused_before_loading(tiny_model_dir, monkeypatch):
    from transformers import AutoModelForImageTextToText

    from lmms_vreason.lmms.backend import Qwen3_VL_VReason

    def never(*args, **kwargs):
        raise AssertionError("weights loaded")

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", never)
    with pytest.raises(ArgumentError, match="qwen3_vl_vreason runs Qwen3-VL.*--model qwen2_5_vl_vreason"):
        Qwen3_VL_VReason(pretrained=str(tiny_model_dir), device="cpu")


@pytest.mark.parametrize(
    ("backend", "checkpoint", "right"),
    [
        ("qwen3_5_vreason", "qwen3_vl", "qwen3_vl_vreason"),
        ("qwen3_5_vreason", "qwen3_5_moe", "qwen3_5_moe_vreason"),
        ("qwen3_vl_moe_vreason", "qwen3_5", "qwen3_5_vreason"),
        ("qwen3_vl_vreason", "qwen3_vl_moe", "qwen3_vl_moe_vreason"),
    ],
)
def test_new_family_checkpoints_are_refused_under_another_model(
    tiny_kits, monkeypatch, backend, checkpoint, right
):
    from lmms_eval.models import get_model
    from transformers import AutoModelForImageTextToText

    def never(*args, **kwargs):
        raise AssertionError("weights loaded")

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", never)
    label = family_of_backend(backend).label
    with pytest.raises(ArgumentError, match=f"{backend} runs {label} checkpoints.*--model {right}$"):
        get_model(backend)(pretrained=str(tiny_kits[checkpoint].dir), device="cpu")


def test_a_hybrid_checkpoint_whose_last_layer_is_linear_attention_is_refused_at_start_up(tmp_path):
    """The controller is never moved silently to another layer; with V-Reason off the checkpoint runs."""
    from lmms_vreason.lmms.backend import Qwen3_5_VReason
    from lmms_vreason.testing.tiny import TinySpec, build_tiny_model

    path = build_tiny_model(tmp_path / "q35_3", TinySpec(family="qwen3_5", layers=3, head_dim=32))
    with pytest.raises(
        ArgumentError,
        match=r"qwen3_5_vreason: .*layer 2 of this checkpoint is linear_attention .*full-attention layers: none",
    ):
        Qwen3_5_VReason(pretrained=str(path), device="cpu")
    plain = Qwen3_5_VReason(pretrained=str(path), device="cpu", vreason="false")
    assert plain.adapter.layer_types == ("linear_attention",) * 3


def test_qwen3_vl_frames_keep_their_sampling_and_real_timestamps(tiny3_model_dir, tmp_path):
    """Our reader's frames reach the processor unsampled, at multiples of 32 px, timed by the real fps.

    Hand-computed reference: 12 frames at ``FPS`` = 8 (1.5 s): Video-R1's 2 fps asks for 3 frames,
    raised to its minimum of 4, at ``linspace(0, 11, 4)`` rounded (0, 4, 7, 11); 100 x 140 px rounded
    to multiples of 32 (96 x 128, inside the pixel bounds); one timestamp per temporal patch of 2
    frames, their mean index over the fps. Without ``do_sample_frames=False`` the Qwen3-VL processor
    would sample the 4 frames again as if they were the 12 of the file (an IndexError).
    """
    from lmms_vreason.lmms.backend import Qwen3_VL_VReason

    backend = Qwen3_VL_VReason(
        pretrained=str(tiny3_model_dir),
        device="cpu",
        dtype="float32",
        max_pixels=48 * 32 * 32,
        min_pixels=4 * 32 * 32,
    )
    video = tmp_path / "clip.mp4"
    write_video(video, np.random.default_rng(0).integers(0, 256, (12, 100, 140, 3), dtype=np.uint8))
    content = [{"type": "video", "url": str(video)}, {"type": "text", "text": "What moves?"}]
    chat = ChatMessages(messages=[{"role": "user", "content": content}])
    inputs = backend._inputs([chat], [backend._load_media(chat)])

    text = backend.tokenizer.decode(inputs["input_ids"][0])
    stamps = [f"<{(a + b) / 2 / FPS:.1f} seconds>" for a, b in ((0, 4), (7, 11))]
    assert [s for s in stamps if s in text] == stamps, text
    assert text.startswith("<|im_start|>user\n")  # Qwen3-VL's template adds no system prompt
    assert inputs["video_grid_thw"][0].tolist() == [2, 96 // 16, 128 // 16]  # [frames / 2, patches]
    t, h, w = inputs["video_grid_thw"][0].tolist()
    video_tokens = int((inputs["input_ids"] == backend.adapter.video_token_id).sum())
    assert video_tokens == t * h * w // 4
    runs = np.diff(np.flatnonzero(inputs["input_ids"][0] == backend.adapter.video_token_id))
    assert (runs > 1).sum() == t - 1  # one run of video tokens per temporal patch


@pytest.mark.parametrize(
    "kit", ["qwen3_vl", "qwen2_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe"], indirect=True
)
def test_each_family_backend_decodes_its_media_like_generate(kit, tmp_path):
    """Request -> the family's media pipeline -> our loop (V-Reason off) equals ``generate`` on those inputs.

    (Qwen2.5-VL's backend is compared with lmms-eval's own backend end to end, in test_backend_e2e.)
    """
    from lmms_vreason.core.settings import GenerationSettings
    from lmms_vreason.lmms.backend import VReasonBackend

    cls = next(c for c in VReasonBackend.__subclasses__() if c.family.name == kit.family)
    backend = tiny_backend(kit.dir, cls, max_pixels=48 * 32 * 32, min_pixels=4 * 32 * 32, vreason=False)
    chat = video_chat(random_video(tmp_path / "clip.mp4", 8, 96, 128, seed=1))
    assert backend.frames.factor == (28 if kit.family == "qwen2_vl" else 32)  # the processor's patch x merge
    out, inputs, _ = backend._run_batch([chat], GenerationSettings(max_new_tokens=8), [0])
    ref = backend.model.generate(**inputs, max_new_tokens=8, do_sample=False, eos_token_id=None)
    assert out.sequences[0] == ref[0, inputs["input_ids"].shape[1] :].tolist()[: len(out.sequences[0])]
    assert len(out.sequences[0]) == 8 or out.sequences[0][-1] in backend.eos_token_ids
    assert (
        out.stats.video_tokens_before[0]
        == int((inputs["input_ids"] == backend.adapter.video_token_id).sum())
        > 0
    )
    assert type(backend.adapter) is family_named(kit.family).adapter_class()
