"""Run an iterator in a background thread, a bounded number of items ahead of its consumer.

Why: on 2 cores a render has three lanes of work: motion generation (torch), frame
rendering (cv2) and H.264 encoding (the ffmpeg process). Run one after the other in the
frame loop, generation and rendering leave a core idle for most of a render; torch and
cv2 release the GIL in their kernels, so a producer thread for the generation overlaps
them (measured in docs/performance_e2e.md "Speed round 4").

Semantics the frame loop relies on: items arrive in order (one producer); an exception in
the producer is raised in the consumer, with its type; `close()` (also on the consumer's
own exit, cancellation included) stops the producer after its current item and closes the
source iterator in the producer's thread (a generator cannot be closed from another thread
while it runs). At most `depth` items wait in the queue, so memory stays bounded.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")
_END = object()


class Ahead(Iterator[T]):
    def __init__(self, source: Iterator[T], depth: int = 2, name: str = "echo-ahead"):
        self._q: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
        self._stop = threading.Event()
        self._source = source
        self._done = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._source:
                if not self._put((True, item)):
                    return
            self._put((True, _END))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put((False, e))
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        ok, item = self._q.get()
        if not ok:
            self._done = True
            raise item
        if item is _END:
            self._done = True
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the producer (after its current item) and wait for it to close the source."""
        self._done = True
        self._stop.set()
        while True:                      # free a producer blocked on a full queue
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=30)

    def __enter__(self) -> "Ahead[T]":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
