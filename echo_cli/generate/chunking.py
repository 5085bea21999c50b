"""Pure chunk plan for generation of any length (no torch, no model).

Chunk k generates frames [start, stop) (at most `chunk` frames). Consecutive chunks share
`overlap` frames, which are cross-faded (stitch.py). Each chunk sees the `t_prev` frames
before its start as clean context; those frames are final by then, because chunk k-1
emits everything up to `start_k` and holds back only its last `overlap` frames.

Invariants (tests/test_chunking.py): chunks cover [0, n) exactly, emitted ranges tile
[0, n) without gaps or repeats, every non-first chunk is longer than the overlap, and
the plan's memory (frames held) never exceeds max(t_prev, overlap) + chunk.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int          # first frame generated
    stop: int           # one past the last frame generated
    prev_start: int     # clean context = final frames [prev_start, start)
    blend: int          # first `blend` generated frames are cross-faded with the previous chunk's tail
    emit_stop: int      # frames [start, emit_stop) are final after this chunk

    @property
    def length(self) -> int:
        return self.stop - self.start

    @property
    def n_prev(self) -> int:
        return self.start - self.prev_start


def plan_chunks(n_frames: int, chunk: int, t_prev: int, overlap: int) -> Iterator[Chunk]:
    """Lazily yield the chunks for n_frames (a generator: a 10-hour plan costs nothing)."""
    if chunk <= overlap:
        raise ValueError("chunk must be longer than overlap")
    if n_frames <= 0:
        return
    start, k = 0, 0
    while True:
        stop = min(start + chunk, n_frames)
        last = stop >= n_frames
        yield Chunk(index=k, start=start, stop=stop, prev_start=max(0, start - t_prev),
                    blend=0 if k == 0 else overlap,
                    emit_stop=stop if last else stop - overlap)
        if last:
            return
        start, k = stop - overlap, k + 1


def count_chunks(n_frames: int, chunk: int, overlap: int) -> int:
    if n_frames <= 0:
        return 0
    if n_frames <= chunk:
        return 1
    stride = chunk - overlap
    return 1 + -(-(n_frames - chunk) // stride)
