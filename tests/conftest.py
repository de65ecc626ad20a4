"""Shared fixtures: tiny random-weight models built once per session, and processed inputs.

``tiny_model_dir``/``tiny_model``/``tiny_processor``/``tiny_inputs`` are the tiny Qwen2.5-VL. The
``kit`` fixture runs a test once per model family (Qwen2.5-VL, Qwen3-VL, Qwen2-VL, Qwen3-VL-MoE,
Qwen3.5, Qwen3.5-MoE), each family's
tiny model built at most once per session and only when a test asks for it; narrow it with
``@pytest.mark.parametrize("kit", [...], indirect=True)``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import pytest
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from lmms_vreason.testing.tiny import TinySpec, build_tiny_model

FAMILY_SPECS: dict[str, TinySpec] = {
    "qwen2_5_vl": TinySpec(vocab="small", seed=0),
    # head_dim 32 != hidden/heads (16), as in Qwen3-VL-4B: nothing may derive it from the hidden size.
    "qwen3_vl": TinySpec(family="qwen3_vl", vocab="small", seed=0, head_dim=32),
    "qwen2_vl": TinySpec(family="qwen2_vl", vocab="small", seed=0),
    "qwen3_vl_moe": TinySpec(family="qwen3_vl_moe", vocab="small", seed=0, head_dim=32),
    # Hybrid: layers 0-2 Gated-DeltaNet linear attention, layer 3 full attention (the default layout).
    "qwen3_5": TinySpec(family="qwen3_5", vocab="small", seed=0, head_dim=32),
    "qwen3_5_moe": TinySpec(family="qwen3_5_moe", vocab="small", seed=0, head_dim=32),
}
HYBRID_FAMILIES = ("qwen3_5", "qwen3_5_moe")
MOE_FAMILIES = ("qwen3_vl_moe", "qwen3_5_moe")
NEW_FAMILIES = ("qwen3_vl_moe", *HYBRID_FAMILIES)


def batched_logit_atol(family: str) -> float:
    """How far a batched (padded, or lr-grid) row's logits may be from the same request alone.

    Attention over padding rounds differently (1e-5). Hybrid models' linear layers run the chunked
    gated delta rule over the prompt in chunks of 64 positions, and left padding shifts where the
    chunks fall, so their states round differently as well (seen: 1.1e-5): 5e-5.
    """
    return 5e-5 if family in HYBRID_FAMILIES else 1e-5


def batched_delta_rtol(family: str) -> float:
    """Relative tolerance on a batched row's ΔV against the same request alone (absolute: 1e-4).

    AdamW divides each element's step by its gradient's running RMS, so an element whose gradient is
    near zero moves by about lr per update whatever its sign noise. Where a batched row rounds
    differently beyond attention (MoE: batched expert matmuls; hybrid: the chunked delta rule, see
    :func:`batched_logit_atol`) that shows in such elements (seen: 0.2% and 0.6% of the element):
    1% there. Qwen3-VL's lr-grid rows show it too since transformers 5.25, whose processor drops the
    outer vision start/end pair around a video's per-frame tokens: on the prompts that gives, one
    element of 1,152 differed by 0.47% (1.08e-4), while the logits still agreed to 1e-5: 1% there as
    well. 0 (absolute only) for the other families.
    """
    return 1e-2 if family in MOE_FAMILIES or family in HYBRID_FAMILIES or family == "qwen3_vl" else 0.0


FAMILIES = tuple(FAMILY_SPECS)


class TinyKit:
    """One family's tiny model, processor and default inputs, each made on first use."""

    def __init__(self, family: str, factory: pytest.TempPathFactory) -> None:
        self.family = family
        self.spec = FAMILY_SPECS[family]
        self._factory = factory

    @cached_property
    def dir(self) -> Path:
        return build_tiny_model(self._factory.mktemp(f"tiny_{self.family}"), self.spec)

    @cached_property
    def processor(self):
        from transformers import AutoProcessor

        if self.family in (
            "qwen3_vl",
            *NEW_FAMILIES,
        ):  # its own size limits (factor 32); qwen2-style pixel kwargs are not its
            return AutoProcessor.from_pretrained(self.dir)
        # Pixel limits in the supported ``size`` form: ``min_pixels``/``max_pixels`` would reach every
        # processor call and warn that they go away (transformers 5.23).
        return AutoProcessor.from_pretrained(
            self.dir, size={"shortest_edge": 4 * 28 * 28, "longest_edge": 64 * 28 * 28}
        )

    @cached_property
    def model(self):
        return load_model(self.dir)

    @cached_property
    def model_f64(self):
        # transformers' default MoE kernel (grouped_mm) takes no float64; the eager loop over experts does.
        extra = {"experts_implementation": "eager"} if self.family in MOE_FAMILIES else {}
        return load_model(self.dir, torch.float64, **extra)

    @cached_property
    def inputs(self) -> dict:
        return make_inputs(self.processor)

    def adapter(self, model=None):
        """The family's adapter on ``model`` (default: the float32 model), picked by ``adapter_for``."""
        from lmms_vreason.models import adapter_for

        return adapter_for(self.model if model is None else model)

    def __repr__(self) -> str:
        return self.family


@pytest.fixture(autouse=True)
def _one_thread_for_new_families(request: pytest.FixtureRequest):
    """Tests on a Qwen3.5 or MoE kit run torch on one CPU thread.

    Their small kernels are pathological on two threads of this torch (2.14, CPU) while another
    process holds a core: Gated-DeltaNet's causal conv (a depthwise ``conv1d``) takes about 0.2 ms on
    one thread and 30 ms (float32) to 1 s (float64) on two, and the MoE tests run about 10x faster on
    one. Each test's reference runs under the same setting, so nothing compared changes.
    """
    callspec = getattr(request.node, "callspec", None)
    family = callspec.params.get("kit") if callspec is not None else None
    if family not in NEW_FAMILIES:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_kits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TinyKit]:
    return {family: TinyKit(family, tmp_path_factory) for family in FAMILY_SPECS}


@pytest.fixture(scope="session", params=FAMILIES)
def kit(request: pytest.FixtureRequest, tiny_kits: dict[str, TinyKit]) -> TinyKit:
    """A tiny model of each family in turn."""
    return tiny_kits[request.param]


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_kits: dict[str, TinyKit]) -> Path:
    """Small-vocabulary tiny Qwen2.5-VL (fast)."""
    return tiny_kits["qwen2_5_vl"].dir


@pytest.fixture(scope="session")
def tiny3_model_dir(tiny_kits: dict[str, TinyKit]) -> Path:
    """Small-vocabulary tiny Qwen3-VL (fast)."""
    return tiny_kits["qwen3_vl"].dir


@pytest.fixture(scope="session")
def tiny3_sensitive_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen3-VL with weights at std 0.2, for end-to-end text comparisons.

    At transformers' 0.02 its greedy text does not depend on the video (4 or 8 frames, any question:
    the same string), so comparing two backends' answers could not see a difference in the frames.
    """
    spec = TinySpec(**{**FAMILY_SPECS["qwen3_vl"].__dict__, "init_std": 0.2})
    return build_tiny_model(tmp_path_factory.mktemp("tiny_qwen3_vl_std0.2"), spec)


@pytest.fixture(scope="session")
def tiny_processor(tiny_kits: dict[str, TinyKit]):
    return tiny_kits["qwen2_5_vl"].processor


class LogitRecorder:
    """A decode probe that keeps every step's raw logits (``[B, V]`` each)."""

    def __init__(self) -> None:
        self.logits: list[torch.Tensor] = []

    def on_logits(self, step: int, logits: torch.Tensor) -> None:
        self.logits.append(logits)

    def on_gradient(self, *args) -> None:
        pass


def stop_when(predicate) -> StoppingCriteriaList:
    return StoppingCriteriaList([StopWhen(predicate)])


class StopWhen(StoppingCriteria):
    """A stop criterion from a predicate on one sample's generated ids (tests only)."""

    def __init__(self, predicate) -> None:
        self.predicate = predicate

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        done = [bool(self.predicate(row)) for row in input_ids.tolist()]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def with_token_as_endoftext(model_dir: Path, out_dir: Path, token_id: int) -> Path:
    """A copy of a tiny checkpoint whose LM-head rows of ``token_id`` and ``<|endoftext|>`` are swapped.

    Wherever the model would emit ``token_id`` it emits ``<|endoftext|>`` instead (the logits are the
    same values, permuted), so greedy decoding reaches ``<|endoftext|>`` at a known step and, unless it
    stops there, goes on. That is the token on which the generation config's and the tokenizer's stop
    ids differ (Qwen2/2.5-VL: ``<|im_end|>`` + ``<|endoftext|>`` vs ``<|im_end|>``).
    """
    import shutil

    from transformers import AutoTokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    for item in model_dir.iterdir():
        if item.is_file():
            shutil.copy(item, out_dir / item.name)
    endoftext = AutoTokenizer.from_pretrained(model_dir).convert_tokens_to_ids("<|endoftext|>")
    model = load_model(model_dir)
    with torch.no_grad():
        rows = model.lm_head.weight
        rows[[token_id, endoftext]] = rows[[endoftext, token_id]].clone()
    model.save_pretrained(out_dir)
    return out_dir


def load_model(path: Path, dtype: torch.dtype = torch.float32, attn: str = "eager", **kwargs):
    """A tiny checkpoint of any family (its ``...ForConditionalGeneration`` class)."""
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(
        path, dtype=dtype, attn_implementation=attn, **kwargs
    ).eval()


@pytest.fixture(scope="session")
def tiny_model(tiny_kits: dict[str, TinyKit]):
    return tiny_kits["qwen2_5_vl"].model


@pytest.fixture(scope="session")
def tiny_model_f64(tiny_kits: dict[str, TinyKit]):
    return tiny_kits["qwen2_5_vl"].model_f64


VIDEOS_KWARGS = {"do_sample_frames": False, "cap_pixels_per_frame": False}
"""The tests' frames are given, not sampled; ``cap_pixels_per_frame=False`` keeps transformers' current
per-frame sizing and silences its notice that the default will change."""


def make_inputs(processor, *, frames: int = 4, size: int = 56, seed: int = 0, question: str = "What moves?"):
    """Processor inputs for one synthetic video + question (video first, then text)."""
    gen = torch.Generator().manual_seed(seed)
    video = torch.randint(0, 256, (frames, 3, size, size), dtype=torch.uint8, generator=gen)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    metadata = {"fps": 2.0, "frames_indices": list(range(frames)), "total_num_frames": frames}
    return dict(
        processor(
            text=[text],
            videos=[video],
            video_metadata=[metadata],
            return_tensors="pt",
            videos_kwargs=VIDEOS_KWARGS,
        )
    )


def make_batch_inputs(processor, samples: list[dict]):
    """Left-padded processor inputs for several (frames, size, seed, question) samples, as a batch."""
    texts, videos, metadata = [], [], []
    for spec in samples:
        frames, size = spec.get("frames", 4), spec.get("size", 56)
        gen = torch.Generator().manual_seed(spec.get("seed", 0))
        videos.append(torch.randint(0, 256, (frames, 3, size, size), dtype=torch.uint8, generator=gen))
        content = [{"type": "video"}, {"type": "text", "text": spec.get("question", "What moves?")}]
        messages = [{"role": "user", "content": content}]
        texts.append(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        metadata.append({"fps": 2.0, "frames_indices": list(range(frames)), "total_num_frames": frames})
    return dict(
        processor(
            text=texts,
            videos=videos,
            video_metadata=metadata,
            padding=True,
            padding_side="left",
            return_tensors="pt",
            videos_kwargs=VIDEOS_KWARGS,
        )
    )


@pytest.fixture(scope="session")
def tiny_inputs(tiny_kits: dict[str, TinyKit]):
    return tiny_kits["qwen2_5_vl"].inputs


def random_video(path: Path, frames: int, height: int, width: int, seed: int = 0) -> str:
    """An mp4 of uniform random frames (written with the fixture benchmark's encoder)."""
    import numpy as np

    from lmms_vreason.testing.fixtures import write_video

    rng = np.random.default_rng(seed)
    write_video(path, rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8))
    return str(path)


def video_chat(video: str | Path, question: str = "What moves?"):
    """One lmms-eval chat request: the video, then the question."""
    from lmms_eval.protocol import ChatMessages

    content = [{"type": "video", "url": str(video)}, {"type": "text", "text": question}]
    return ChatMessages(messages=[{"role": "user", "content": content}])


def tiny_backend(model_dir: Path, backend_class=None, **overrides):
    """A backend on the CPU reading 4 small frames (overrides: any model argument)."""
    if backend_class is None:
        from lmms_vreason.lmms.backend import Qwen2_5_VL_VReason as backend_class
    args = {
        "pretrained": str(model_dir),
        "device": "cpu",
        "dtype": "float32",
        "attn_implementation": "eager",
        "nframes": 4,
        "max_pixels": 64 * 28 * 28,
        "min_pixels": 4 * 28 * 28,
        **overrides,
    }
    return backend_class(**{k: v for k, v in args.items() if v is not None})
