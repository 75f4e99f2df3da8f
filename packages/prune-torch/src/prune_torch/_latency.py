"""CPU latency of a model's forward pass: what a prune is for, measured rather than inferred from MACs."""

from __future__ import annotations

import statistics
import time

import attrs
import torch

from prune_ops import PruningError
from prune_torch._restore import eval_flags
from prune_torch._trace import ExampleInputs, split_inputs

__all__ = ["Latency", "measure_latency"]


@attrs.frozen
class Latency:
    """Median and spread of timed forward passes, in seconds.

    ``median`` is what a report compares; ``low`` and ``high`` (the fastest and slowest repeat)
    show how noisy the machine was while measuring.
    """

    median: float
    low: float
    high: float
    repeats: int
    threads: int

    def __str__(self) -> str:
        return f"{self.median * 1e3:.3f} ms (median of {self.repeats}, {self.threads} thread(s))"


def measure_latency(
    model: torch.nn.Module,
    example_inputs: ExampleInputs,
    *,
    repeats: int = 20,
    warmup: int = 3,
    min_seconds: float = 0.0,
) -> Latency:
    """Time ``model(example_inputs)`` in eval mode without gradients, on the inputs' device.

    Each module's train/eval flag is put back afterwards. ``warmup`` untimed calls come first
    (allocator and kernel selection); then ``repeats`` timed calls, more if ``min_seconds`` has
    not passed yet, so a fast model still gets a stable median. On a GPU, each call is
    synchronised so the time covers the work, not the launch.

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU())
    >>> latency = measure_latency(net, torch.randn(4, 8), repeats=5, warmup=1)
    >>> latency.repeats, latency.low <= latency.median <= latency.high
    (5, True)
    """
    for name, value in (("repeats", repeats), ("warmup", warmup)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "repeats" else 0):
            raise PruningError(f"measure_latency: '{name}' must be an int >= {int(name == 'repeats')} (got {value!r})")
    args, kwargs = split_inputs(example_inputs)
    devices = {t.device for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)}
    sync = torch.cuda.synchronize if any(d.type == "cuda" for d in devices) else (lambda: None)
    times: list[float] = []
    with eval_flags(model), torch.no_grad():
        for _ in range(warmup):
            model(*args, **kwargs)
        sync()
        started = time.perf_counter()
        while len(times) < repeats or time.perf_counter() - started < min_seconds:
            tick = time.perf_counter()
            model(*args, **kwargs)
            sync()
            times.append(time.perf_counter() - tick)
    return Latency(statistics.median(times), min(times), max(times), len(times), torch.get_num_threads())
