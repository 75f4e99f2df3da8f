"""Channel counts asked for some modules only are those of the full answer for these modules.

``apply`` asks :func:`prune_torch._sizes.channel_updates` only about the modules whose forward
read an int attribute (the only ones whose counts can follow); the answer for them must be the
one the unrestricted search gives.
"""

from __future__ import annotations

import pytest
import torch
from models import FAMILIES
from test_attributes import Downsample

import prune_ops as po
import prune_torch as pt
from prune_graph import Graph
from prune_torch._sizes import channel_updates, size_updates


def _plan(model: torch.nn.Module, x: torch.Tensor) -> tuple[Graph, po.Plan]:
    graph = pt.trace(model, x)
    groups = graph.groups()
    chosen = [(g, po.select(torch.rand(g.size).numpy(), amount=0.5)) for g in groups.prunable]
    return graph, po.make_plan(graph, po.removal_of(graph, chosen))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_restricted_updates_are_the_full_ones_of_those_modules(name: str) -> None:
    torch.manual_seed(0)
    family = FAMILIES[name]
    graph, plan = _plan(family.build().eval(), family.inputs())
    full = channel_updates(graph, plan)
    modules = sorted({u.module for u in full})
    for wanted in (modules[::2], modules[1::2], [], ["no.such.module"]):
        assert channel_updates(graph, plan, wanted) == [u for u in full if u.module in wanted]
    assert size_updates(graph, plan, channel_modules=modules) == size_updates(graph, plan)


def test_a_module_that_reads_its_count_still_follows() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), Downsample(8, 6)).eval()
    x = torch.randn(1, 3, 12, 12)  # no other dim of 8 (a count stays ambiguous beside an equal size that stays)
    pt.prune(model, x, ratio=0.5, show_progress=False)
    assert model[2].channels == model[0].out_channels == 4
    model(x)
