"""Video reading off the critical path (``prefetch``): the next chunk's media are prepared in a worker
process while the current chunk decodes.

Reference: the same backend with ``prefetch=false`` (every chunk read in-process, as before). The
worker must change nothing a user can see (responses, token counts, each broken sample's message),
fail a broken or crashing sample alone, turn other worker exceptions into a run error, and leave no
process behind.
"""

from __future__ import annotations

import os

import psutil
import pytest
import torch
from _prefetch_fakes import prepare_fake
from conftest import random_video, tiny_backend

from lmms_vreason.benchmarks import MEDIA_ERROR_PREFIX
from lmms_vreason.lmms.prefetch import MediaPipeline


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _workers_left() -> list[psutil.Process]:
    """This process's children that are media workers (none may outlive a pipeline)."""
    return [
        p
        for p in psutil.Process().children(recursive=True)
        if "lmms_vreason.lmms.prefetch" in " ".join(p.cmdline())
    ]


def _requests(docs: list[dict]):
    from lmms_eval.api.instance import Instance

    def to_messages(doc):
        content = [{"type": "video", "url": doc["video"]}, {"type": "text", "text": doc["question"]}]
        return [{"role": "user", "content": content}]

    gen_kwargs = {"max_new_tokens": 6, "do_sample": False, "temperature": 0}
    return [
        Instance(
            request_type="generate_until",
            arguments=("", to_messages, gen_kwargs, doc_id, "t", "test"),
            idx=0,
            metadata={"task": "t", "doc_id": doc_id, "repeats": 1},
        )
        for doc_id in range(len(docs))
    ]


def test_prefetch_gives_the_same_responses_and_media_errors_and_leaves_no_worker(tiny_model_dir, tmp_path):
    """5 requests in chunks of 2 ([0, 1] read here, [2, 3] and [4] by the worker); doc 2's file is
    broken and doc 4's is missing, so a prefetched ragged chunk loses one sample and keeps the other."""
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    videos = [
        random_video(tmp_path / "a.mp4", 8, 56, 56, 1),
        random_video(tmp_path / "b.mp4", 8, 56, 112, 2),
        str(bad),
        random_video(tmp_path / "c.mp4", 8, 84, 56, 3),
        str(tmp_path / "missing.mp4"),
    ]
    docs = [
        {"video": v, "question": q} for v, q in zip(videos, ["What moves?", "Which?", "Q?", "Where?", "Q?"])
    ]
    runs = {}
    for prefetch in ("false", "true"):
        backend = tiny_backend(tiny_model_dir, batch_size=2, prefetch=prefetch, step_size=2, lr=0.05)
        backend.task_dict = {"t": {"test": docs}}
        results = backend.generate_until(_requests(docs))
        runs[prefetch] = (results, backend.media_stats)
    (off, off_stats), (on, on_stats) = runs["false"], runs["true"]
    assert (off_stats.prefetched, on_stats.prefetched, on_stats.chunks) == (0, 2, 3)
    assert on_stats.worker_starts == 1 and on_stats.worker_crashes == 0
    assert [r.text for r in on] == [r.text for r in off]
    assert [r.token_counts.output_tokens for r in on] == [r.token_counts.output_tokens for r in off]
    assert [r.token_counts.input_tokens for r in on] == [r.token_counts.input_tokens for r in off]
    for i, cause in ((2, "moov atom not found"), (4, "file not found")):
        assert on[i].text.startswith(MEDIA_ERROR_PREFIX) and cause in on[i].text
    for i in (0, 1, 3):
        assert not on[i].text.startswith(MEDIA_ERROR_PREFIX) and on[i].token_counts.output_tokens > 0
    assert len(on_stats.worker_pids) == 1 and all(_gone(pid) for pid in on_stats.worker_pids)
    assert not _workers_left()


def test_auto_prefetch_is_off_on_the_cpu(tiny_model_dir) -> None:
    assert tiny_backend(tiny_model_dir).prefetch is False
    assert tiny_backend(tiny_model_dir, prefetch=True).prefetch is True


@pytest.mark.slow  # starts three workers (a fresh interpreter importing torch each)
def test_a_sample_that_kills_the_worker_fails_alone_and_the_run_goes_on() -> None:
    """The worker dies on a chunk: the chunk is read one sample at a time in fresh workers, the killer
    fails with a media error naming it, its neighbours are batched, the next chunk is read as usual."""
    chunks = [["a0"], ["b1", "crash", "bad", "c3"], ["d4"]]
    with MediaPipeline(None, None, prefetch=True, prepare=prepare_fake) as pipeline:
        out = list(pipeline.chunks(chunks, list))
    crashed = out[1][1]
    assert crashed.loaded == [0, 3]
    assert sorted(crashed.failures) == [1, 2]
    assert "crashed on its media" in str(crashed.failures[1]) and "SIGKILL" in str(crashed.failures[1])
    assert str(crashed.failures[2]) == "cannot read video bad.mp4: moov atom not found"
    assert crashed.inputs["rows"].tolist() == [[ord(c) for c in "b1  "], [ord(c) for c in "c3  "]]
    assert out[2][1].inputs["rows"].tolist() == [[ord(c) for c in "d4  "]]
    # chunk 0 here, chunks 1 and 2 in workers: the first died on the chunk, a second on the sample alone
    local_pid = out[0][1].inputs["pid"].item()
    assert local_pid == os.getpid()
    assert out[2][1].inputs["pid"].item() != local_pid
    stats = pipeline.stats
    assert (stats.chunks, stats.prefetched, stats.worker_crashes, stats.worker_starts) == (3, 2, 2, 3)
    assert all(_gone(pid) for pid in pipeline.stats.worker_pids) and not _workers_left()


def test_other_worker_exceptions_are_run_errors_with_the_workers_traceback() -> None:
    with MediaPipeline(None, None, prefetch=True, prepare=prepare_fake) as pipeline:
        chunks = pipeline.chunks([["same"], ["same"], ["boom"], ["never read"]], list)
        (_, here), (_, there) = next(chunks), next(chunks)
        # what the worker sends crosses the pipe unchanged (arrays, not shared memory)
        assert torch.equal(here.inputs["rows"], there.inputs["rows"])
        assert here.inputs["pid"].item() == os.getpid() != there.inputs["pid"].item()
        with pytest.raises(ValueError, match="boom: not a media error") as raised:
            next(chunks)
    assert "_prefetch_fakes.py" in str(raised.value.__cause__)  # where it was raised, in the worker
    assert pipeline.stats.worker_starts == 1
    assert all(_gone(pid) for pid in pipeline.stats.worker_pids) and not _workers_left()


def test_a_chunk_whose_chats_fail_raises_on_its_own_turn() -> None:
    """lmms-eval's doc_to_messages failing for chunk 1 must not stop chunk 0 from being decoded."""

    def chats_of(chunk):
        if chunk == "broken task":
            raise KeyError("no such doc")
        return [chunk]

    with MediaPipeline(None, None, prefetch=True, prepare=prepare_fake) as pipeline:
        chunks = pipeline.chunks(["ok", "broken task"], chats_of)
        assert next(chunks)[1].inputs["rows"].tolist() == [[ord(c) for c in "ok  "]]
        with pytest.raises(KeyError, match="no such doc"):
            next(chunks)
    assert pipeline.stats.worker_pids == []  # nothing was left for a worker to do
