"""The one timing helper the benchmark scripts share."""
import statistics
import time


def median_us(fn, repeats: int, setup=None) -> float:
    """Median microseconds of ``fn()`` over ``repeats`` calls, after one warm-up call (compilation)."""
    fn()
    times = []
    for _ in range(repeats):
        if setup:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6
