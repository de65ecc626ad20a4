"""Timing and peak memory of decode runs, the same way for every variant and device.

Every variant decodes exactly the same number of tokens (no EOS), is warmed up once, then timed over
``repeats`` runs (median). Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA; on the CPU it
is the peak resident set size sampled every 2 ms above the process's size before the model was
built, measured in a separate run (the sampler thread would otherwise slow the timed runs).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil
import torch

from lmms_vreason.core.decode import DecodeOutput


class PeakMemory:
    """Peak memory during a block: CUDA allocator peak, or sampled RSS above a baseline on the CPU."""

    def __init__(self, device: torch.device, baseline_rss: int) -> None:
        self.device = device
        self.baseline = baseline_rss
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            proc = psutil.Process()

            def sample() -> None:
                while not self._stop.is_set():
                    self.peak = max(self.peak, proc.memory_info().rss - self.baseline)
                    time.sleep(0.002)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, psutil.Process().memory_info().rss - self.baseline)


def process_rss() -> int:
    """This process's resident set size now (the CPU memory baseline)."""
    return psutil.Process().memory_info().rss


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Timing:
    """One variant: median ms per decoded step (after the first token), median wall seconds of a
    whole call (prefill included), peak memory in bytes, and the last run's output."""

    ms_per_token: float
    total_s: float
    peak_bytes: int
    output: DecodeOutput
    elapsed_s: float = 0.0
    """Wall time of the measurement minus its warm-up call (what remains of a compiled variant's
    first call, the warm-up, is its compilation)."""


def measure(fn: Callable[[], DecodeOutput], repeats: int, device: torch.device, baseline: int) -> Timing:
    """Warm up, time ``repeats`` calls, then one more call under :class:`PeakMemory`."""
    fn()
    started = time.perf_counter()
    per_token, totals = [], []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        out = fn()
        synchronize(device)
        totals.append(time.perf_counter() - start)
        per_token.append(out.stats.decode_s / max(len(out.sequences[0]) - 1, 1) * 1e3)
    with PeakMemory(device, baseline) as mem:
        out = fn()
    elapsed = time.perf_counter() - started + statistics.median(totals)  # + one call for the warm-up's run
    return Timing(statistics.median(per_token), statistics.median(totals), int(mem.peak), out, elapsed)


def generate_ms_per_token(
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    new_tokens: int,
    repeats: int,
    device: torch.device,
) -> float:
    """transformers' ``generate`` per decoded token, prefill excluded: (T(n) - T(1)) / (n - 1)."""

    def run(n: int) -> float:
        synchronize(device)
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        synchronize(device)
        return time.perf_counter() - start

    run(new_tokens)
    full = statistics.median(run(new_tokens) for _ in range(repeats))
    first = statistics.median(run(1) for _ in range(repeats))
    return (full - first) / max(new_tokens - 1, 1) * 1e3
