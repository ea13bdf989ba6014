"""Buffers kept between integrations, so that a recorded tape does not fault in fresh pages.

A tape of ``steps * stages * B * H`` values is written once per training step. Allocated afresh
each time, a block above the C allocator's mmap threshold (at most 32 MB with glibc) goes back to
the operating system on free, and the next step faults in fresh zeroed pages while it writes the
tape: on the benchmark machine that cost SwitchingHeun's EC-Train 22 % at B = 1024, H = 512
(nothing at H = 128, whose tape the allocator reuses; ``benchmarks/README.md``). A
:class:`Workspace` keeps the last few buffers of each name and shape and hands the same memory
out again.
"""

from __future__ import annotations

from collections import OrderedDict

import torch


class Workspace:
    """Reusable buffers keyed by ``(name, shape, dtype, device)``; at most ``capacity`` kept.

    A buffer handed out is valid until the same name and shape is requested again: whoever holds
    a tape built from a workspace must consume it (or copy it) before the next integration.
    Copying or pickling a workspace gives an empty one.
    """

    # 16: a training batch's tape and temporaries (4 buffers for SwitchingHeun), those of a
    # shorter last block or batch, and the temporaries of a few evaluation batch shapes
    def __init__(self, capacity: int = 16):
        self.capacity = capacity
        self._buffers: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    def get(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """An uninitialised buffer of ``shape`` with ``like``'s dtype and device."""
        key = (name, tuple(shape), like.dtype, like.device)
        buf = self._buffers.pop(key, None)
        if buf is None:
            buf = like.new_empty(shape)
            while len(self._buffers) >= self.capacity:
                self._buffers.popitem(last=False)
        self._buffers[key] = buf
        return buf

    @property
    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self._buffers.values())

    def clear(self) -> None:
        self._buffers.clear()

    def __getstate__(self):
        return {"capacity": self.capacity}

    def __setstate__(self, state):
        self.__init__(state["capacity"])

    def __deepcopy__(self, memo):
        return Workspace(self.capacity)

    def __repr__(self) -> str:
        return f"Workspace({len(self._buffers)} buffers, {self.nbytes} bytes)"
