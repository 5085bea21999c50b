"""generate.ahead.Ahead: the frame loop's producer thread keeps order, raises the producer's
errors in the consumer, stays bounded and closes its source in the producer's thread."""
import threading
import time

import pytest

from echo_cli.errors import InputError
from echo_cli.generate.ahead import Ahead


def test_items_arrive_in_order_and_the_source_is_closed():
    closed_in = []

    def source():
        try:
            yield from range(50)
        finally:
            closed_in.append(threading.current_thread().name)

    with Ahead(source(), depth=3, name="producer") as a:
        assert list(a) == list(range(50))
    assert closed_in == ["producer"]


def test_producer_error_is_raised_in_the_consumer_with_its_type():
    def source():
        yield 1
        raise InputError("bad chunk", fix="none")

    a = Ahead(source())
    assert next(a) == 1
    with pytest.raises(InputError, match="bad chunk"):
        next(a)
    with pytest.raises(StopIteration):          # finished after the error
        next(a)
    a.close()


def test_stays_bounded_and_close_stops_the_producer_early():
    made = []
    closed = threading.Event()

    def source():
        try:
            for i in range(10_000):
                made.append(i)
                yield i
        finally:
            closed.set()

    a = Ahead(source(), depth=2)
    assert next(a) == 0
    time.sleep(0.3)                              # the producer fills the queue, then waits
    assert len(made) <= 1 + 2 + 1                # consumed + queued + one waiting to be put
    a.close()
    assert closed.wait(5) and not a._thread.is_alive()
    assert len(made) < 10
