"""Stand-ins for ``prepare_chunk`` that the prefetch worker imports by name (tests only).

A chat here is a plain string: ``"crash"`` kills the process (as a decoder crash or the OOM killer would),
``"boom"`` raises a non-media exception, ``"bad"`` is a sample whose media cannot be read, anything
else loads and becomes one row of ``inputs["rows"]`` (its characters' code points), so the test can
see which samples were batched, in which order.
"""

from __future__ import annotations

import os
import signal

import torch

from lmms_vreason.lmms.media import MediaError, PreparedChunk


def prepare_fake(processor, settings, chats: list[str]) -> PreparedChunk:
    failures: dict[int, MediaError] = {}
    loaded: list[int] = []
    for i, chat in enumerate(chats):
        if chat == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        if chat == "boom":
            raise ValueError("boom: not a media error")
        if chat == "bad":
            failures[i] = MediaError(f"cannot read video {chat}.mp4: moov atom not found")
        else:
            loaded.append(i)
    rows = torch.tensor([[ord(c) for c in chats[i].ljust(4)[:4]] for i in loaded], dtype=torch.int64)
    return PreparedChunk(
        loaded=loaded,
        inputs={"rows": rows, "pid": torch.tensor([os.getpid()])} if loaded else None,
        failures=failures,
    )
