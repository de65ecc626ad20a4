"""Video reading off the critical path: the next chunk's media are read, resized and processed in a
worker process while the current chunk decodes.

Why a process and not a thread: the decode loop holds the GIL between its kernel launches, so a reader
thread would mostly wait for it; decord, the resize and the processor run in another interpreter.

What stays exactly as without it: every chunk goes through the same
:func:`~lmms_vreason.lmms.media.prepare_chunk` with the same processor object (pickled once to the
worker) and the same frame settings, so the inputs and each sample's
:class:`~lmms_vreason.lmms.media.MediaError` message are the ones an in-process read gives. The first
chunk is prepared in this process while the worker starts (its start-up is then off the critical
path too); every later chunk is prepared in the worker, one chunk ahead of the decode loop. On CUDA a
receiving thread pins the inputs, so the backend's copy to the device is non-blocking.

Failures:

* a :class:`MediaError` (missing or broken file) fails its own sample, as in-process;
* any other exception raised in the worker is raised again here, the run error it would have been
  in-process, with the worker's traceback as its cause;
* a worker that dies (a decoder crash on one file) does not end the run: the chunk is read again one
  sample at a time in fresh workers, the sample that kills one fails alone with a MediaError saying
  so, and the others are batched;
* a worker that cannot start (an import error in its interpreter) is a run error saying so;
* the worker is stopped when the pipeline closes (the ``with`` block ends, on errors too): asked to
  exit, then terminated if it does not within a few seconds; and it exits by itself when this
  process ends (its pipe closes), so it never outlives the run.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, TypeVar

import numpy as np
import torch

from lmms_vreason.lmms.media import FrameSettings, MediaError, MediaRequest, PreparedChunk, prepare_chunk

T = TypeVar("T")
Prepare = Callable[[Any, FrameSettings, list[Any]], PreparedChunk]
"""``prepare(processor, frame_settings, requests)``: a module-level function (the worker imports it)."""

_POLL_S = 0.05
_STOP_S = 5.0
"""How long a closing worker may take to finish its chunk before it is terminated."""


class MediaWorkerError(RuntimeError):
    """The prefetch worker failed in a way no single sample explains (a run error)."""


class _RemoteTraceback(Exception):
    """The traceback of an exception raised in the worker (the cause of the one raised here)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


def _send(conn: Connection, obj: Any) -> None:
    # Plain pickle, not multiprocessing's: torch's reducers there would move tensors through shared
    # memory (/dev/shm), which containers often cap at 64 MiB.
    conn.send_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def _recv(conn: Connection) -> Any:
    return pickle.loads(conn.recv_bytes())


def serve(read_fd: int, write_fd: int) -> None:
    """The worker process: prepare each chunk it is sent; ``None`` or a closed pipe ends it.

    Its first message is the set-up: the prepare function, the processor, the frame settings and
    its number of torch threads.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent stops us
    inbox, outbox = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    try:
        prepare, processor, settings, threads = _recv(inbox)
    except (EOFError, OSError):  # the parent is gone
        return
    torch.set_num_threads(threads)
    _send(outbox, ("ready", None, None))
    while True:
        try:
            requests = _recv(inbox)
        except (EOFError, OSError):
            return
        if requests is None:
            return
        try:
            result = _to_wire(prepare(processor, settings, requests))
        except BaseException as exc:  # sent to the parent, which raises it: nothing is swallowed
            text = traceback.format_exc()
            try:
                _send(outbox, ("error", exc, text))
            except Exception:  # the exception itself does not pickle
                _send(outbox, ("error", MediaWorkerError(f"{type(exc).__name__}: {exc}"), text))
            continue
        _send(outbox, ("ok", result, None))


def _to_wire(prepared: PreparedChunk) -> PreparedChunk:
    """Tensors as numpy arrays: the cheapest form to pickle (one copy of their bytes)."""
    if prepared.inputs is not None:
        prepared.inputs = {
            k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in prepared.inputs.items()
        }
    return prepared


def _from_wire(prepared: PreparedChunk, pin: bool) -> PreparedChunk:
    """The worker's arrays as tensors again (pinned for a non-blocking copy to a CUDA device)."""
    if prepared.inputs is not None:
        tensors = {
            k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in prepared.inputs.items()
        }
        prepared.inputs = {
            k: v.pin_memory() if pin and isinstance(v, torch.Tensor) else v for k, v in tensors.items()
        }
    return prepared


class _Worker:
    """One worker process and its two pipes (used from the pipeline's receiving thread only).

    A fresh interpreter started with ``subprocess`` rather than ``multiprocessing``: forking a process
    that holds CUDA, OpenMP or tokenizer threads is unsafe, and multiprocessing's ``spawn`` imports
    the parent's ``__main__`` again in the child, which re-runs any script without a
    ``if __name__ == "__main__"`` guard (the whole evaluation, in the worker). It sees no GPU.
    """

    def __init__(self, prepare: Prepare, processor: Any, settings: FrameSettings, threads: int) -> None:
        to_child, child_in = os.pipe()
        child_out, from_child = os.pipe()
        env = {
            **os.environ,
            "CUDA_VISIBLE_DEVICES": "",
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),  # the parent's imports resolve
        }
        code = f"from lmms_vreason.lmms.prefetch import serve; serve({to_child}, {from_child})"
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code], pass_fds=(to_child, from_child), env=env
            )
        finally:
            os.close(to_child)
            os.close(from_child)
        self.inbox = Connection(child_out, writable=False)
        self.outbox = Connection(child_in, readable=False)
        self.ready = False
        self.start_s: float | None = None
        self._started = time.perf_counter()
        try:
            _send(self.outbox, (prepare, processor, settings, threads))
        except OSError:  # it died on start-up: prepare() reports it
            pass

    @property
    def pid(self) -> int:
        return self.process.pid

    def prepare(self, requests: list[Any], closing: threading.Event) -> PreparedChunk | None:
        """The worker's result for ``requests``; ``None`` if the worker died (or the pipeline closed)."""
        if not self.ready:
            try:
                started = self._receive(closing) is not None
            except (EOFError, OSError):
                started = False
            if not started:
                if closing.is_set():
                    return None
                raise MediaWorkerError(
                    f"the media prefetch worker did not start ({_exit_reason(self.exitcode)}; its error "
                    "is printed above); prefetch=false reads the media in this process"
                )
            self.ready = True
            self.start_s = time.perf_counter() - self._started
        try:
            _send(self.outbox, requests)
            reply = self._receive(closing)
        except (EOFError, OSError):
            return None
        if reply is None:
            return None
        status, value, text = reply
        if status == "ok":
            return value
        raise value from _RemoteTraceback(text)

    def _receive(self, closing: threading.Event) -> tuple[str, Any, str | None] | None:
        """The worker's next message; ``None`` if it died or the pipeline closed first."""
        while not self.inbox.poll(_POLL_S):
            if (closing.is_set() or self.process.poll() is not None) and not self.inbox.poll(0):
                return None
        return _recv(self.inbox)

    @property
    def exitcode(self) -> int | None:
        try:
            return self.process.wait(1.0)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """Ask the worker to exit; terminate it if it is still busy after a few seconds."""
        try:
            _send(self.outbox, None)
        except OSError:
            pass
        self.outbox.close()
        for stop in (None, self.process.terminate, self.process.kill):
            if stop is not None:
                stop()
            try:
                self.process.wait(_STOP_S)
                break
            except subprocess.TimeoutExpired:
                continue
        self.inbox.close()


def _describe(request: Any) -> str:
    return request.describe() if isinstance(request, MediaRequest) else "its media"


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclass
class MediaStats:
    """Where the decode loop's time went on media, for the run's log and the media benchmark."""

    chunks: int = 0
    prefetched: int = 0
    """Chunks prepared in the worker (the others were prepared in this process)."""
    wait_s: float = 0.0
    """Seconds the decode loop waited for media: the whole in-process preparation time, and for a
    prefetched chunk only what was not done while the previous chunk decoded."""
    worker_starts: int = 0
    worker_start_s: float = 0.0
    """Seconds from starting a worker to its first chunk (its imports), summed over workers."""
    worker_crashes: int = 0
    worker_pids: list[int] = field(default_factory=list)


class MediaPipeline:
    """Each chunk's :class:`PreparedChunk`, in order; with ``prefetch``, chunk i+1 is prepared in a
    worker process while chunk i is consumed (decoded) by the caller.

    Use as a context manager: leaving the block stops the worker, on errors too.
    """

    def __init__(
        self,
        processor: Any,
        settings: FrameSettings,
        *,
        prefetch: bool,
        device: torch.device | str = "cpu",
        prepare: Prepare = prepare_chunk,
        threads: int | None = None,
    ) -> None:
        self.processor = processor
        self.settings = settings
        self.prefetch = prefetch
        self.pin = torch.device(device).type == "cuda"
        self.prepare = prepare
        self.threads = threads or max(1, torch.get_num_threads() // 2)
        self.stats = MediaStats()
        self._worker: _Worker | None = None
        self._receiver: ThreadPoolExecutor | None = None
        self._closing = threading.Event()
        self._last_exit = "unknown"

    def __enter__(self) -> MediaPipeline:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def chunks(
        self, items: Iterable[T], requests_of: Callable[[T], list[Any]]
    ) -> Iterator[tuple[T, PreparedChunk]]:
        """``(item, prepared)`` for every chunk ``item``; ``requests_of(item)`` gives its media requests.

        With prefetch, ``requests_of`` runs for chunk i+1 before chunk i is handed out; an error it
        raises is raised when chunk i+1's turn comes, as it would be without prefetch.
        """
        it = iter(items)
        first = next(it, _END)
        if first is _END:
            return
        ahead = self._ahead(it, requests_of)
        yield first, self._timed(lambda: self.prepare(self.processor, self.settings, requests_of(first)))
        while ahead is not None:
            item, pending = ahead
            prepared = self._timed(pending)
            ahead = self._ahead(it, requests_of)
            yield item, prepared

    def close(self) -> None:
        """Stop the worker (finishing or abandoning its chunk) and the receiving thread."""
        self._closing.set()
        if self._receiver is not None:
            self._receiver.shutdown(wait=True, cancel_futures=True)
            self._receiver = None
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    # internals ------------------------------------------------------------------------------
    def _timed(self, pending: Callable[[], PreparedChunk]) -> PreparedChunk:
        start = time.perf_counter()
        try:
            return pending()
        finally:
            self.stats.wait_s += time.perf_counter() - start
            self.stats.chunks += 1

    def _ahead(
        self, it: Iterator[T], requests_of: Callable[[T], list[Any]]
    ) -> tuple[T, Callable[[], PreparedChunk]] | None:
        """The next chunk and how to get its preparation (started now in the worker, with prefetch)."""
        item = next(it, _END)
        if item is _END:
            return None
        if not self.prefetch:
            return item, lambda: self.prepare(self.processor, self.settings, requests_of(item))
        try:
            requests = requests_of(item)
        except Exception as exc:
            error = exc

            def raise_later() -> PreparedChunk:
                raise error

            return item, raise_later
        if self._receiver is None:
            self._receiver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vreason-media")
        future: Future[PreparedChunk] = self._receiver.submit(self._remote, requests)
        return item, future.result

    def _remote(self, requests: list[Any]) -> PreparedChunk:
        """Runs in the receiving thread: the worker's preparation of ``requests``, pinned on CUDA."""
        prepared = self._in_worker(requests)
        if prepared is None:
            prepared = self._isolate(requests)
        self.stats.prefetched += 1
        return _from_wire(prepared, self.pin)

    def _in_worker(self, requests: list[Any]) -> PreparedChunk | None:
        """``requests`` prepared by the worker (started if needed); ``None`` if it died doing so."""
        if self._closing.is_set():
            raise MediaWorkerError("the media pipeline was closed")
        if self._worker is None:
            self._worker = _Worker(self.prepare, self.processor, self.settings, self.threads)
            self.stats.worker_starts += 1
            self.stats.worker_pids.append(self._worker.pid)
        fresh = not self._worker.ready
        prepared = self._worker.prepare(requests, self._closing)
        if fresh and self._worker.start_s is not None:
            self.stats.worker_start_s += self._worker.start_s
        if prepared is None:
            if self._closing.is_set():
                raise MediaWorkerError("the media pipeline was closed")
            self._last_exit = _exit_reason(self._worker.exitcode)
            self.stats.worker_crashes += 1
            self._worker.close()
            self._worker = None
        return prepared

    def _isolate(self, requests: list[Any]) -> PreparedChunk:
        """After a worker died on ``requests``: find the samples that kill it, one at a time."""
        failures: dict[int, MediaError] = {}
        survivors: list[int] = []
        for i, request in enumerate(requests):
            if len(requests) > 1 and self._in_worker([request]) is not None:
                survivors.append(i)
            else:
                failures[i] = MediaError(
                    f"the media reader crashed on {_describe(request)} (the prefetch worker process died: "
                    f"{self._last_exit})"
                )
        if not survivors:
            return PreparedChunk(loaded=[], inputs=None, failures=failures)
        again = self._in_worker([requests[i] for i in survivors])
        if again is None:
            raise MediaWorkerError(
                f"the media prefetch worker died ({self._last_exit}) on samples that it read one by one "
                "without dying; run with prefetch=false to read media in-process"
            )
        failures.update({survivors[j]: exc for j, exc in again.failures.items()})
        return PreparedChunk(
            loaded=[survivors[j] for j in again.loaded], inputs=again.inputs, failures=failures
        )


_END: Any = object()
