"""Which decode row is which request at which learning rate: the one owner of the row layout.

An lr grid decodes every request once per learning rate after one prefill, so the loop's rows are
``request * per_request + g`` (the ``g``-th lr of that request; ``per_request = 1`` without a grid).
Everything that maps rows to requests or lrs (the cache copy, the controller's lrs, the sampling
generators, the backend's scored row and its grid file) asks a :class:`RowLayout` instead of
spelling the arithmetic out itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class RowLayout:
    """``requests`` requests, each decoded at every lr of ``lrs`` (``None``: one row per request)."""

    requests: int
    lrs: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.requests < 0:
            raise ValueError(f"requests must be >= 0, got {self.requests}")
        if self.lrs is not None and not self.lrs:
            raise ValueError("an lr grid needs at least one learning rate")

    @property
    def per_request(self) -> int:
        """Rows per request: the number of learning rates of the grid, else 1."""
        return 1 if self.lrs is None else len(self.lrs)

    @property
    def rows(self) -> int:
        return self.requests * self.per_request

    def row(self, request: int, g: int = 0) -> int:
        """The row of ``request`` at the ``g``-th learning rate."""
        if not (0 <= request < self.requests and 0 <= g < self.per_request):
            raise IndexError(f"no row for request {request}, lr #{g} in {self}")
        return request * self.per_request + g

    def scored_row(self, request: int) -> int:
        """The row lmms-eval scores for ``request``: the grid's first learning rate."""
        return self.row(request, 0)

    def request_of(self, row: int) -> int:
        return row // self.per_request

    def row_lrs(self, default: float) -> tuple[float, ...]:
        """The learning rate of every row (``default`` without a grid)."""
        lrs = self.lrs if self.lrs is not None else (default,)
        return tuple(lrs) * self.requests

    def expand(self, tensor: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Per-request ``tensor`` repeated for every row of its request along ``dim``."""
        return tensor if self.per_request == 1 else tensor.repeat_interleave(self.per_request, dim=dim)

    def expand_list(self, items: Sequence[T]) -> list[T]:
        """Per-request ``items``, each repeated for every row of its request (a shallow copy)."""
        return [item for item in items for _ in range(self.per_request)]
