"""Groups and propagation on small hand-built graphs whose answers are worked out by hand."""

from __future__ import annotations

import re

import pytest

from prune_graph import DimRef, Graph, GraphError, ValueId
from prune_ops import GroupKind, InvalidIndicesError, UnprunableError, find_groups, make_plan, propagate, removal_of

from .nets import Net, axis_id, coupled_sizes_problems, group_with, member, rebuild, removal_dict


def ref(value: str, dim: int) -> DimRef:
    return DimRef(ValueId(value), dim)


def removed(graph: Graph, value: str, dim: int, indices, **options) -> dict[str, list[int]]:
    """State part of the propagation of ``indices`` of ``value[dim]``, as ``{'conv.weight[0]': [...]}``."""
    groups = find_groups(graph, **options)
    result = propagate(graph, ref(value, dim), indices, groups)
    return {
        f"{graph.value(d.value).path}[{d.dim}]": i.tolist()
        for d, i in sorted(result.indices.items())
        if graph.value(d.value).is_state
    }


def chain() -> Graph:
    """x -> conv0 (8) -> bn0 -> relu -> conv1 (6) -> bn1 -> conv2 (4, output)."""
    net = Net()
    x = net.input((2, 3, 5, 5))
    h = net.unary(net.bn(net.conv(x, 8, bias=True, module="conv0"), module="bn0"))
    h = net.bn(net.conv(h, 6, module="conv1"), module="bn1")
    return net.build([net.conv(h, 4, k=1, module="conv2")])


# -- chains, residual adds, concat -----------------------------------------------------------


def test_a_conv_bn_chain_couples_producer_norm_and_consumer() -> None:
    graph = chain()
    groups = find_groups(graph)
    group = group_with(groups, "conv0.weight", 0)
    assert group.prunable
    assert group.size == 8
    assert [m.label for m in group.parameters] == [
        "conv0.weight[0]",
        "conv0.bias[0]",
        "bn0.weight[0]",
        "bn0.bias[0]",
        "bn0.running_mean[0]",
        "bn0.running_var[0]",
        "conv1.weight[1]",
    ]
    assert group.modules == ("conv0", "bn0", "conv1")
    assert removed(graph, "conv0.weight", 0, [6, 1]) == {
        "bn0.bias[0]": [1, 6],
        "bn0.running_mean[0]": [1, 6],
        "bn0.running_var[0]": [1, 6],
        "bn0.weight[0]": [1, 6],
        "conv0.bias[0]": [1, 6],
        "conv0.weight[0]": [1, 6],
        "conv1.weight[1]": [1, 6],
    }
    # starting from the consumer's input side gives the same group
    assert removed(graph, "conv1.weight", 1, [1, 6]) == removed(graph, "conv0.weight", 0, [1, 6])
    assert removed(graph, "bn0.running_var", 0, [1, 6]) == removed(graph, "conv0.weight", 0, [1, 6])


def test_residual_add_joins_both_branches_into_one_group() -> None:
    net = Net()
    x = net.input((1, 3, 4, 4))
    stem = net.conv(x, 6, module="stem")
    branch = net.bn(net.conv(net.unary(net.conv(stem, 5, module="a")), 6, module="b"), module="bn")
    joined = net.binary(stem, branch)
    side = net.conv(x, 6, module="side")
    joined = net.binary(side, joined)
    graph = net.build([net.conv(joined, 2, module="head")])
    groups = find_groups(graph)
    group = group_with(groups, "stem.weight", 0)
    assert group is group_with(groups, "b.weight", 0) is group_with(groups, "side.weight", 0)
    assert {m.label for m in group.parameters} == {
        "stem.weight[0]",
        "a.weight[1]",
        "b.weight[0]",
        "bn.weight[0]",
        "bn.bias[0]",
        "bn.running_mean[0]",
        "bn.running_var[0]",
        "side.weight[0]",
        "head.weight[1]",
    }
    # the inner width of the residual branch is its own group
    inner = group_with(groups, "a.weight", 0)
    assert inner is not group
    assert {m.label for m in inner.parameters} == {"a.weight[0]", "b.weight[1]"}
    result = removed(graph, "side.weight", 0, [0, 5])
    assert result["stem.weight[0]"] == result["b.weight[0]"] == result["head.weight[1]"] == [0, 5]
    assert "a.weight[0]" not in result


def concat_graph() -> Graph:
    """conva (3) and convb (5) concatenated into conv3's 8 input channels."""
    net = Net()
    x = net.input((1, 2, 4, 4))
    a = net.conv(x, 3, module="conva")
    b = net.conv(x, 5, module="convb")
    return net.build([net.conv(net.concat([a, b]), 2, module="conv3")])


def test_concat_gives_one_group_per_input_at_its_offset() -> None:
    graph = concat_graph()
    groups = find_groups(graph)
    first, second = group_with(groups, "conva.weight", 0), group_with(groups, "convb.weight", 0)
    assert first is not second
    assert (first.size, second.size) == (3, 5)
    assert member(first, "conv3.weight", 1).units.tolist() == [0, 1, 2, -1, -1, -1, -1, -1]
    assert member(second, "conv3.weight", 1).units.tolist() == [-1, -1, -1, 0, 1, 2, 3, 4]
    assert removed(graph, "conva.weight", 0, [1]) == {"conva.weight[0]": [1], "conv3.weight[1]": [1]}
    assert removed(graph, "convb.weight", 0, [0, 4]) == {"convb.weight[0]": [0, 4], "conv3.weight[1]": [3, 7]}
    # from the consumer, indices on both sides of the seam split into the two groups
    both = propagate(graph, ref("conv3.weight", 1), [1, 3, 7])
    assert removal_dict(both.indices)["conva.weight[0]"] == [1]
    assert removal_dict(both.indices)["convb.weight[0]"] == [0, 4]
    assert sorted((g.id, u.tolist()) for g, u in both.units) == sorted([(first.id, [1]), (second.id, [0, 4])])


def test_concat_cannot_empty_one_input() -> None:
    graph = concat_graph()
    with pytest.raises(InvalidIndicesError, match=r"conva\.weight\[0\]\): removing all 3 channels would leave none"):
        propagate(graph, ref("conv3.weight", 1), [0, 1, 2])


# -- flatten and heads ----------------------------------------------------------------------


def flatten_graph() -> Graph:
    """conv (4 channels, 2x3 spatial) -> flatten (24) -> fc (10)."""
    net = Net()
    x = net.input((2, 3, 2, 3))
    h = net.conv(x, 4, module="conv")
    return net.build([net.linear(net.flatten(h), 10, bias=True, module="fc")])


def test_flatten_into_linear_maps_a_channel_to_its_block() -> None:
    graph = flatten_graph()
    groups = find_groups(graph)
    group = group_with(groups, "conv.weight", 0)
    assert group.prunable
    assert group.size == 4
    assert member(group, "fc.weight", 1).units.tolist() == [c for c in range(4) for _ in range(6)]
    assert removed(graph, "conv.weight", 0, [1, 3]) == {
        "conv.weight[0]": [1, 3],
        "fc.weight[1]": [*range(6, 12), *range(18, 24)],
    }
    assert removed(graph, "fc.weight", 1, range(6, 12)) == {"conv.weight[0]": [1], "fc.weight[1]": list(range(6, 12))}


def test_flatten_rejects_part_of_a_block_naming_the_index() -> None:
    graph = flatten_graph()
    with pytest.raises(InvalidIndicesError, match=r"fc\.weight\[1\]: index 13 cannot be removed on its own") as info:
        propagate(graph, ref("fc.weight", 1), [*range(6, 12), 13])
    assert "removes fc.weight[1] indices [12, 13, 14, 15, 16, 17] together" in str(info.value)


def heads_graph(heads: int = 2, head_dim: int = 3) -> Graph:
    """(B, T, 8) -> q, k, v (C = H*D) -> view (B, T, H, D) -> transpose -> attention -> back -> out."""
    net = Net()
    c = heads * head_dim
    x = net.input((2, 5, 8))

    def split_heads(module: str, bias: bool = False) -> str:
        projected = net.linear(x, c, bias=bias, module=module)
        return net.permute(net.reshape(projected, (2, 5, heads, head_dim)), (0, 2, 1, 3))

    y = net.attention(split_heads("q", bias=True), split_heads("k"), split_heads("v"))
    back = net.reshape(net.permute(y, (0, 2, 1, 3)), (2, 5, c))
    return net.build([net.linear(back, 8, module="out")])


def test_reshape_into_heads_gives_a_heads_group_and_a_head_dim_group() -> None:
    graph = heads_graph()
    groups = find_groups(graph)
    kinds = {g.kind: (g, m) for g, m in groups.containing(ref("v.weight", 0))}
    assert set(kinds) == {GroupKind.HEADS, GroupKind.HEAD_DIMS}
    heads, heads_member = kinds[GroupKind.HEADS]
    dims, dims_member = kinds[GroupKind.HEAD_DIMS]
    assert (heads.size, dims.size) == (2, 3)
    assert heads.prunable
    assert dims.prunable
    assert heads_member.units.tolist() == [0, 0, 0, 1, 1, 1]
    assert dims_member.units.tolist() == [0, 1, 2, 0, 1, 2]
    # heads are shared by q, k, v and the output projection; q and k share their own head dims
    assert {m.label for m in heads.parameters} == {
        "q.weight[0]",
        "q.bias[0]",
        "k.weight[0]",
        "v.weight[0]",
        "out.weight[1]",
    }
    assert {m.label for m in dims.parameters} == {"v.weight[0]", "out.weight[1]"}
    qk = {g.kind: g for g, _ in groups.containing(ref("k.weight", 0))}[GroupKind.HEAD_DIMS]
    assert {m.label for m in qk.parameters} == {"q.weight[0]", "q.bias[0]", "k.weight[0]"}
    # a whole head goes from q, k, v and the output projection's input
    assert removed(graph, "v.weight", 0, [3, 4, 5]) == {
        "k.weight[0]": [3, 4, 5],
        "out.weight[1]": [3, 4, 5],
        "q.bias[0]": [3, 4, 5],
        "q.weight[0]": [3, 4, 5],
        "v.weight[0]": [3, 4, 5],
    }
    # the same head dim in every head
    assert removed(graph, "v.weight", 0, [1, 4]) == {"out.weight[1]": [1, 4], "v.weight[0]": [1, 4]}
    assert removed(graph, "q.weight", 0, [2, 5]) == {"k.weight[0]": [2, 5], "q.bias[0]": [2, 5], "q.weight[0]": [2, 5]}


@pytest.mark.parametrize(
    ("indices", "bad"),
    [([0], 0), ([1, 2], 1), ([0, 1, 3], 3), ([5, 2, 3], 5), ([0, 1, 4], 4)],
)
def test_projection_rejects_indices_that_are_not_whole_heads_or_head_dims(indices: list[int], bad: int) -> None:
    graph = heads_graph(heads=3, head_dim=2)  # head h is {2h, 2h+1}; head dim d is {d, d+2, d+4}
    with pytest.raises(InvalidIndicesError, match=rf"v\.weight\[0\]: index {bad} cannot be removed on its own"):
        propagate(graph, ref("v.weight", 0), indices)


def test_a_whole_head_plus_a_head_dim_is_their_union() -> None:
    graph = heads_graph()
    assert removed(graph, "v.weight", 0, [0, 1, 2, 3]) == {
        "k.weight[0]": [0, 1, 2],
        "out.weight[1]": [0, 1, 2, 3],
        "q.bias[0]": [0, 1, 2],
        "q.weight[0]": [0, 1, 2],
        "v.weight[0]": [0, 1, 2, 3],
    }


# -- chunk, grouped convs ------------------------------------------------------------------


def chunk_graph() -> Graph:
    """conv (6) -> chunk(2) -> a * sigmoid(b) -> conv2: a gated unit."""
    net = Net()
    x = net.input((1, 2, 3, 3))
    a, b = net.split(net.conv(x, 6, module="conv"), [3, 3])
    return net.build([net.conv(net.binary(a, net.unary(b, "aten.sigmoid"), "aten.mul"), 2, module="conv2")])


def test_chunk_requires_the_same_positions_in_every_chunk() -> None:
    graph = chunk_graph()
    group = group_with(find_groups(graph), "conv2.weight", 1)
    assert member(group, "conv.weight", 0).units.tolist() == [0, 1, 2, 0, 1, 2]
    assert removed(graph, "conv.weight", 0, [1, 4]) == {"conv.weight[0]": [1, 4], "conv2.weight[1]": [1]}
    assert removed(graph, "conv2.weight", 1, [2]) == {"conv.weight[0]": [2, 5], "conv2.weight[1]": [2]}
    with pytest.raises(InvalidIndicesError, match=r"conv\.weight\[0\]: index 1 cannot be removed on its own.*\[1, 4\]"):
        propagate(graph, ref("conv.weight", 0), [1])


def test_unequal_split_pieces_are_separate_groups() -> None:
    net = Net()
    x = net.input((1, 2, 3, 3))
    a, b = net.split(net.conv(x, 5, module="conv"), [2, 3])
    graph = net.build([net.concat([net.conv(a, 4, module="ca"), net.conv(b, 4, module="cb")])])
    groups = find_groups(graph, prune_outputs=True)
    first, second = group_with(groups, "ca.weight", 1), group_with(groups, "cb.weight", 1)
    assert member(first, "conv.weight", 0).units.tolist() == [0, 1, -1, -1, -1]
    assert member(second, "conv.weight", 0).units.tolist() == [-1, -1, 0, 1, 2]
    assert removed(graph, "conv.weight", 0, [1, 4]) == {
        "conv.weight[0]": [1, 4],
        "ca.weight[1]": [1],
        "cb.weight[1]": [2],
    }


def grouped_graph(groups: int) -> Graph:
    """conv0 (8) -> grouped conv (8 -> 8, ``groups``) -> conv2 (3)."""
    net = Net()
    x = net.input((1, 3, 4, 4))
    h = net.conv(x, 8, module="conv0")
    h = net.conv(h, 8, groups=groups, module="gconv")
    return net.build([net.conv(h, 3, module="conv2")])


def test_grouped_conv_has_a_group_axis_and_two_widths() -> None:
    graph = grouped_graph(2)
    groups = find_groups(graph)
    whole = group_with(groups, axis_id(graph, "gconv.groups"), 0)
    assert whole.size == 2
    assert whole.prunable
    assert member(whole, "conv0.weight", 0).units.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert member(whole, "gconv.weight", 0).units.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    width_in = group_with(groups, "gconv.weight", 1)
    assert member(width_in, "conv0.weight", 0).units.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    width_out = group_with(groups, axis_id(graph, "gconv.group_width"), 0)
    assert member(width_out, "conv2.weight", 1).units.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    # a whole group: both sides of the conv and its group count
    assert removed(graph, "gconv.weight", 0, [4, 5, 6, 7]) == {
        "conv0.weight[0]": [4, 5, 6, 7],
        "gconv.weight[0]": [4, 5, 6, 7],
        "gconv.groups[0]": [1],
        "conv2.weight[1]": [4, 5, 6, 7],
    }
    # one input position of every group: the weight's dim 1 loses it once
    assert removed(graph, "gconv.weight", 1, [2]) == {"conv0.weight[0]": [2, 6], "gconv.weight[1]": [2]}
    with pytest.raises(InvalidIndicesError, match=r"conv0\.weight\[0\]: index 2 cannot be removed on its own"):
        propagate(graph, ref("conv0.weight", 0), [2])


def test_depthwise_conv_is_one_group_with_its_input() -> None:
    graph = grouped_graph(8)
    groups = find_groups(graph)
    group = group_with(groups, "conv0.weight", 0)
    assert {m.label for m in group.members if m.value.is_state} == {
        "conv0.weight[0]",
        "gconv.weight[0]",
        "gconv.groups[0]",
        "conv2.weight[1]",
    }
    assert removed(graph, "conv0.weight", 0, [1, 6]) == {
        "conv0.weight[0]": [1, 6],
        "gconv.weight[0]": [1, 6],
        "gconv.groups[0]": [1, 6],
        "conv2.weight[1]": [1, 6],
    }


def test_two_incompatible_factorisations_of_one_dim_pin_it() -> None:
    # a depthwise conv with multiplier 2 (6 groups of 2) feeding a conv with 2 groups of 6:
    # a unit of either layout is scattered in the other, so nothing there may go
    net = Net()
    x = net.input((1, 1, 4, 4))
    h = net.conv(x, 6, k=1, module="c0")
    h = net.conv(h, 12, groups=6, module="dw")
    h = net.conv(h, 4, groups=2, module="g2")
    graph = net.build([net.conv(h, 3, module="out")])
    groups = find_groups(graph)
    for g, _ in groups.containing(ref("dw.weight", 0)):
        assert not g.prunable
        assert any("factored two ways (2 × 6 and 6 × 2)" in reason for reason in g.blockers), g.blockers
    # the second conv's output width is untouched by the conflict
    assert [g.kind for g, _ in groups.containing(ref("g2.weight", 0)) if g.prunable] == [GroupKind.CHANNELS]
    with pytest.raises(UnprunableError, match="factored two ways"):
        propagate(graph, ref("dw.weight", 0), [0, 1])


# -- boundaries and ignored modules ----------------------------------------------------------


def test_model_inputs_and_outputs_block_their_groups() -> None:
    graph = chain()
    groups = find_groups(graph)
    out = group_with(groups, "conv2.weight", 0)
    assert not out.prunable
    assert any("model output" in r for r in out.blockers)
    assert "unprunable" in out.describe()
    assert "model output" in out.describe()
    inp = group_with(groups, "conv0.weight", 1)
    assert not inp.prunable
    assert any("model input 'x'" in r for r in inp.blockers)
    assert out not in groups.prunable
    assert inp not in groups.prunable
    with pytest.raises(UnprunableError, match=r"cannot be pruned: .*model output"):
        propagate(graph, ref("conv2.weight", 0), [0])
    with pytest.raises(UnprunableError, match=r"model input 'x'"):
        removal_of(graph, [(inp, [0])])


def test_prune_outputs_lifts_only_the_output_pin() -> None:
    graph = chain()
    groups = find_groups(graph, prune_outputs=True)
    out = group_with(groups, "conv2.weight", 0)
    assert out.prunable
    assert out.blockers == ()
    assert out in groups.prunable
    assert not group_with(groups, "conv0.weight", 1).prunable
    assert removed(graph, "conv2.weight", 0, [3], prune_outputs=True) == {"conv2.weight[0]": [3]}


def test_ignore_pins_the_outputs_of_that_module_only() -> None:
    graph = chain()
    groups = find_groups(graph, ignore=("conv1",))
    produced = group_with(groups, "conv1.weight", 0)
    assert not produced.prunable
    assert produced.blockers == ("output of ignored module conv1",)
    # conv1's input channels still change
    assert group_with(groups, "conv1.weight", 1).prunable
    assert group_with(groups, "conv0.weight", 0) is group_with(groups, "conv1.weight", 1)
    assert removed(graph, "conv1.weight", 1, [0]) == removed(graph, "conv0.weight", 0, [0])
    with pytest.raises(UnprunableError, match="ignored module conv1"):
        propagate(graph, ref("conv1.weight", 0), [0], groups)


def test_ignore_by_module_prefix_covers_submodules_but_not_name_prefixes() -> None:
    net = Net()
    x = net.input((1, 3, 4, 4))
    h = net.conv(x, 4, module="layer1.conv")
    h = net.conv(h, 4, module="layer10.conv")
    graph = net.build([net.conv(h, 2, module="head")])
    groups = find_groups(graph, ignore=("layer1",))
    assert not group_with(groups, "layer1.conv.weight", 0).prunable
    assert group_with(groups, "layer10.conv.weight", 0).prunable


def test_unknown_dims_are_refused() -> None:
    graph = chain()
    with pytest.raises(GraphError, match=re.escape("no value 'nope'")):
        propagate(graph, ref("nope", 0), [0])


def test_propagation_takes_no_unit_that_other_chosen_units_already_cover() -> None:
    # conv (4) -> split [1, 3] -> relu each -> concat -> conv with 2 groups of 2 inputs. The
    # 1-channel piece is not linked through its relu (a size-1 dim may be a broadcast), so the
    # conv's input-position unit 0 reaches conv.weight[0] only at index 2. Removing indices
    # [2, 3] is exactly the second conv group; that unit must not be taken as well, or the
    # 1-channel piece would be emptied.
    net = Net()
    x = net.input((1, 1, 2, 2))
    a, b = net.split(net.conv(x, 4, k=1, module="conv"), [1, 3])
    h = net.conv(net.concat([net.unary(a), net.unary(b)]), 2, groups=2, module="g")
    graph = net.build([net.conv(h, 1, k=1, module="out")])
    groups = find_groups(graph)
    position = group_with(groups, "g.weight", 1)
    assert member(position, "conv.weight", 0).units.tolist() == [-1, 1, 0, 1]
    assert removed(graph, "conv.weight", 0, [2, 3]) == {
        "conv.weight[0]": [2, 3],
        "g.groups[0]": [1],
        "g.weight[0]": [1],
        "out.weight[1]": [1],
    }
    result = propagate(graph, ref("conv.weight", 0), [2, 3], groups)
    assert [(g.id, u.tolist()) for g, u in result.units] == [(group_with(groups, "out.weight", 1).id, [1])]


def test_a_factorised_output_concatenated_into_a_grouped_conv_is_kept() -> None:
    # conv4 (2 groups of 2 outputs) is concatenated with conv6 into conv11 (2 groups of 3
    # inputs): conv4's units are scattered across conv11's groups, so those channels stay
    net = Net()
    x = net.input((1, 1, 3, 3))
    h = net.conv(x, 2, k=1, module="conv0")
    a = net.conv(h, 4, groups=2, module="conv4")
    b = net.conv(a, 2, k=1, module="conv6")
    y = net.conv(net.bn(net.concat([a, b]), module="bn9"), 2, groups=2, module="conv11")
    graph = net.build([net.conv(net.conv(y, 3, k=1, module="conv13"), 1, k=1, module="conv14")])
    groups = find_groups(graph)
    for g, _ in groups.containing(ref("bn9.weight", 0)):
        assert not g.prunable
        assert any("factored two ways" in reason for reason in g.blockers), g.describe()
    # what stays prunable gives consistent shapes
    assert group_with(groups, "conv13.weight", 0).prunable
    for g in groups.prunable:
        plan = make_plan(graph, removal_of(graph, [(g, [0])]))
        assert not coupled_sizes_problems(graph, plan.new_shapes()), g.describe()
        rebuild(graph, plan.new_shapes())
