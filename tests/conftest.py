"""Shared fixtures: a tiny random-weight Qwen2.5-VL built once per session, and processed inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from lmms_vreason.testing.tiny import TinySpec, build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small-vocabulary tiny model (fast)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_small"), TinySpec(vocab="small", seed=0))


@pytest.fixture(scope="session")
def tiny_processor(tiny_model_dir: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir, max_pixels=64 * 28 * 28, min_pixels=4 * 28 * 28)


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


def load_model(path: Path, dtype: torch.dtype = torch.float32, attn: str = "eager"):
    from transformers import Qwen2_5_VLForConditionalGeneration

    return Qwen2_5_VLForConditionalGeneration.from_pretrained(
        path, dtype=dtype, attn_implementation=attn
    ).eval()


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path):
    return load_model(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_model_f64(tiny_model_dir: Path):
    return load_model(tiny_model_dir, torch.float64)


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
            videos_kwargs={"do_sample_frames": False},
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
            videos_kwargs={"do_sample_frames": False},
        )
    )


@pytest.fixture(scope="session")
def tiny_inputs(tiny_processor):
    return make_inputs(tiny_processor)
