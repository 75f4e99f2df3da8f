"""Coupling rules, hand-checked op kind by op kind."""

from __future__ import annotations

import types

import pytest

from prune_graph import (
    RULES,
    DimRef,
    FactorLink,
    GraphBuilder,
    GraphError,
    Identity,
    Link,
    Mix,
    Mixing,
    Offset,
    Op,
    OpId,
    OpKind,
    Pin,
    ValueId,
    ValueKind,
    couplings_of,
    validate,
)

SETS_SIZE = "aten.x in m sets this dim's size itself"


def couple(kind, shapes, inputs, outputs, attrs=None, axes=(), rules=RULES):
    """The couplings of one op ``op0`` (target ``aten.x``, module ``m``), checked for consistency."""
    op = Op(OpId("op0"), kind, "aten.x", tuple(inputs), tuple(outputs), "m", attrs or {}, tuple(axes))
    found = couplings_of(op, lambda v: shapes[v], rules)
    _assert_consistent(found, shapes, (*inputs, *outputs, *axes))
    return found


def _assert_consistent(found, shapes, values):
    """Maps and factor sizes fit the dims they join, and every dim of size > 1 is mentioned."""
    mentioned = set()
    for c in found:
        assert c.op == "op0"
        if isinstance(c, Link):
            assert (c.map.src_size, c.map.dst_size) == (shapes[c.src.value][c.src.dim], shapes[c.dst.value][c.dst.dim])
            mentioned |= {c.src, c.dst}
        elif isinstance(c, FactorLink):
            assert shapes[c.fine.value][c.fine.dim] == c.size
            for part, size in zip(c.parts, c.sizes):
                if part is not None:
                    assert shapes[part.value][part.dim] == size
                    mentioned.add(part)
            mentioned.add(c.fine)
        else:
            mentioned.add(c.dim)
    for value in values:
        for d, size in enumerate(shapes[value]):
            assert size <= 1 or DimRef(ValueId(value), d) in mentioned


def d(value: str, dim: int) -> DimRef:
    return DimRef(ValueId(value), dim)


def identity_links(found) -> set[tuple[frozenset[str], int]]:
    """Identity links as unordered pairs of ``value[dim]`` with their size."""
    return {
        (frozenset((str(c.src), str(c.dst))), c.map.size)
        for c in found
        if isinstance(c, Link) and isinstance(c.map, Identity)
    }


def pair(a: str, b: str, size: int) -> tuple[frozenset[str], int]:
    return frozenset((a, b)), size


def other_links(found) -> set[tuple[str, str, object]]:
    return {(str(c.src), str(c.dst), c.map) for c in found if isinstance(c, Link) and not isinstance(c.map, Identity)}


def factor_links(found) -> set[tuple[str, tuple[str | None, ...], tuple[int, ...]]]:
    return {
        (str(c.fine), tuple(None if p is None else str(p) for p in c.parts), c.sizes)
        for c in found
        if isinstance(c, FactorLink)
    }


def pins(found) -> dict[str, str]:
    return {str(c.dim): c.reason for c in found if isinstance(c, Pin)}


def test_every_kind_has_a_rule_and_the_table_is_read_only():
    assert set(RULES) == set(OpKind)
    assert isinstance(RULES, types.MappingProxyType)
    with pytest.raises(TypeError):
        RULES[OpKind.CONV] = RULES[OpKind.OPAQUE]  # type: ignore[index]


# -- elementwise -----------------------------------------------------------------------------


def test_elementwise_broadcasting_couples_only_matching_dims():
    # a (N, C, H, W) + b (C, 1, 1): b's C is the output's C; its size-1 dims stay apart
    shapes = {"a": (2, 3, 4, 5), "b": (3, 1, 1), "y": (2, 3, 4, 5)}
    found = couple(OpKind.ELEMENTWISE, shapes, ["a", "b"], ["y"])
    assert identity_links(found) == {
        pair("a[0]", "y[0]", 2),
        pair("a[1]", "y[1]", 3),
        pair("a[2]", "y[2]", 4),
        pair("a[3]", "y[3]", 5),
        pair("b[0]", "y[1]", 3),
    }
    assert len(found) == 5


def test_elementwise_does_not_couple_a_broadcast_size_one_dim():
    shapes = {"a": (2, 1, 4), "b": (2, 3, 4), "y": (2, 3, 4)}
    found = couple(OpKind.ELEMENTWISE, shapes, ["a", "b"], ["y"])
    assert pair("a[1]", "y[1]", 3) not in identity_links(found)
    assert pair("b[1]", "y[1]", 3) in identity_links(found)
    assert not pins(found)


# -- conv ------------------------------------------------------------------------------------


def test_conv_groups_one_couples_channels_and_pins_spatial_dims():
    shapes = {"x": (2, 4, 8, 8), "w": (6, 4, 3, 3), "b": (6,), "y": (2, 6, 6, 6)}
    found = couple(OpKind.CONV, shapes, ["x", "w", "b"], ["y"], {"groups": 1})
    assert identity_links(found) == {
        pair("x[0]", "y[0]", 2),
        pair("x[1]", "w[1]", 4),
        pair("w[0]", "y[1]", 6),
        pair("b[0]", "y[1]", 6),
    }
    assert not factor_links(found)
    # the rule says nothing about kernels and spatial dims; couplings_of pins them
    assert pins(found) == dict.fromkeys(["x[2]", "x[3]", "w[2]", "w[3]", "y[2]", "y[3]"], SETS_SIZE)
    rule_only = RULES[OpKind.CONV](Op(OpId("op0"), OpKind.CONV, "t", ("x", "w", "b"), ("y",)), lambda v: shapes[v])
    assert not [c for c in rule_only if isinstance(c, Pin)]


def test_transposed_conv_swaps_the_weight_dims():
    shapes = {"x": (2, 4, 8, 8), "w": (4, 6, 3, 3), "y": (2, 6, 10, 10)}
    found = couple(OpKind.CONV, shapes, ["x", "w"], ["y"], {"transposed": True})
    assert identity_links(found) == {pair("x[0]", "y[0]", 2), pair("x[1]", "w[0]", 4), pair("w[1]", "y[1]", 6)}


def test_grouped_conv_factors_channels_over_virtual_axes():
    # groups=2: x channels = (group, in-width), y channels = (group, out-width)
    shapes = {"x": (2, 4, 8, 8), "w": (6, 2, 3, 3), "y": (2, 6, 6, 6), "g": (2,), "gw": (3,)}
    found = couple(OpKind.CONV, shapes, ["x", "w"], ["y"], {"groups": 2}, axes=["g", "gw"])
    assert factor_links(found) == {("x[1]", ("g[0]", "w[1]"), (2, 2)), ("y[1]", ("g[0]", "gw[0]"), (2, 3))}
    assert identity_links(found) == {pair("x[0]", "y[0]", 2), pair("w[0]", "y[1]", 6)}


def test_grouped_transposed_conv_shares_the_input_side_with_the_weight():
    shapes = {"x": (1, 4, 5, 5), "w": (4, 3, 3, 3), "y": (1, 6, 7, 7), "g": (2,), "gw": (2,)}
    found = couple(OpKind.CONV, shapes, ["x", "w"], ["y"], {"groups": 2, "transposed": True}, axes=["g", "gw"])
    assert factor_links(found) == {("x[1]", ("g[0]", "gw[0]"), (2, 2)), ("y[1]", ("g[0]", "w[1]"), (2, 3))}
    assert identity_links(found) == {pair("x[1]", "w[0]", 4)}


def test_depthwise_conv_collapses_to_identity_links():
    shapes = {"x": (1, 4, 8, 8), "w": (4, 1, 3, 3), "y": (1, 4, 8, 8), "g": (4,), "gw": (1,)}
    found = couple(OpKind.CONV, shapes, ["x", "w"], ["y"], {"groups": 4}, axes=["g", "gw"])
    assert not factor_links(found)
    assert identity_links(found) == {pair("g[0]", "x[1]", 4), pair("g[0]", "y[1]", 4), pair("w[0]", "y[1]", 4)}


def test_depthwise_conv_with_a_multiplier_keeps_one_factor():
    shapes = {"x": (1, 4, 8, 8), "w": (8, 1, 3, 3), "y": (1, 8, 8, 8), "g": (4,), "gw": (2,)}
    found = couple(OpKind.CONV, shapes, ["x", "w"], ["y"], {"groups": 4}, axes=["g", "gw"])
    assert factor_links(found) == {("y[1]", ("g[0]", "gw[0]"), (4, 2))}
    assert pair("g[0]", "x[1]", 4) in identity_links(found)


def test_grouped_conv_needs_its_virtual_axes():
    shapes = {"x": (2, 4, 8, 8), "w": (6, 2, 3, 3), "y": (2, 6, 6, 6)}
    with pytest.raises(GraphError, match=r"op op0 aten.x in m: a grouped conv needs two virtual axes \(got 0\)"):
        couple(OpKind.CONV, shapes, ["x", "w"], ["y"], {"groups": 2})


def test_the_builder_creates_the_virtual_axes_of_a_grouped_conv():
    b = GraphBuilder()
    x = b.value("x", (1, 4, 8, 8), "float32", ValueKind.INPUT)
    w = b.value("conv.weight", (6, 2, 3, 3), "float32", ValueKind.PARAMETER, "conv", "weight")
    y = b.value("y", (1, 6, 8, 8), "float32", ValueKind.ACTIVATION)
    op = b.op(OpKind.CONV, "aten.conv2d", [x, w], [y], "conv", {"groups": 2})
    graph = validate(b.build([x], [y]))
    assert op.axes == ("op0:groups", "op0:group_width")
    groups, width = (graph.value(a) for a in op.axes)
    assert (groups.shape, groups.kind, groups.path) == ((2,), ValueKind.VIRTUAL, "conv.groups")
    assert (width.shape, width.kind, width.path) == ((3,), ValueKind.VIRTUAL, "conv.group_width")
    assert factor_links(graph.couplings) == {
        ("x[1]", ("op0:groups[0]", "conv.weight[1]"), (2, 2)),
        ("y[1]", ("op0:groups[0]", "op0:group_width[0]"), (2, 3)),
    }


def test_the_builder_sizes_the_width_axis_of_a_transposed_grouped_conv_from_its_input():
    b = GraphBuilder()
    x = b.value("x", (1, 4, 5, 5), "float32", ValueKind.INPUT)
    w = b.value("up.weight", (4, 3, 3, 3), "float32", ValueKind.PARAMETER, "up", "weight")
    y = b.value("y", (1, 6, 7, 7), "float32", ValueKind.ACTIVATION)
    op = b.op(OpKind.CONV, "aten.conv_transpose2d", [x, w], [y], "up", {"groups": 2, "transposed": True})
    graph = validate(b.build([x], [y]))
    assert [graph.value(a).shape for a in op.axes] == [(2,), (2,)]
    assert factor_links(graph.couplings) == {
        ("x[1]", ("op0:groups[0]", "op0:group_width[0]"), (2, 2)),
        ("y[1]", ("op0:groups[0]", "up.weight[1]"), (2, 3)),
    }


def test_conv_with_a_rank_one_input_is_reported_against_the_op():
    shapes = {"x": (4,), "w": (6, 4, 3, 3), "y": (2, 6, 6, 6)}
    with pytest.raises(GraphError, match=r"op op0 aten.x in m: its values do not fit a conv op"):
        couple(OpKind.CONV, shapes, ["x", "w"], ["y"])


def test_conv_with_mismatched_weight_channels_is_pinned_not_linked():
    # _link_same leaves dims of different sizes apart, so they end up pinned, never joined
    shapes = {"x": (2, 4, 8, 8), "w": (6, 5, 3, 3), "y": (2, 6, 6, 6)}
    found = couple(OpKind.CONV, shapes, ["x", "w"], ["y"])
    assert pins(found)["x[1]"] == pins(found)["w[1]"] == SETS_SIZE


# -- linear, matmul, norm, reduce ------------------------------------------------------------


def test_linear_couples_features_and_leading_dims():
    shapes = {"x": (2, 5, 3), "w": (7, 3), "b": (7,), "y": (2, 5, 7)}
    found = couple(OpKind.LINEAR, shapes, ["x", "w", "b"], ["y"])
    assert identity_links(found) == {
        pair("x[0]", "y[0]", 2),
        pair("x[1]", "y[1]", 5),
        pair("x[2]", "w[1]", 3),
        pair("w[0]", "y[2]", 7),
        pair("b[0]", "y[2]", 7),
    }


def test_matmul_couples_the_contraction_dims():
    shapes = {"a": (2, 5, 3), "b": (3, 7), "bias": (7,), "y": (2, 5, 7)}
    found = couple(OpKind.MATMUL, shapes, ["a", "b", "bias"], ["y"])
    assert identity_links(found) == {
        pair("a[2]", "b[0]", 3),
        pair("a[1]", "y[1]", 5),
        pair("b[1]", "y[2]", 7),
        pair("a[0]", "y[0]", 2),
        pair("bias[0]", "y[2]", 7),
    }


def test_batched_matmul_couples_batch_dims_and_contraction():
    shapes = {"a": (4, 5, 3), "b": (4, 3, 7), "y": (4, 5, 7)}
    found = couple(OpKind.MATMUL, shapes, ["a", "b"], ["y"])
    assert identity_links(found) == {
        pair("a[2]", "b[1]", 3),
        pair("a[1]", "y[1]", 5),
        pair("b[2]", "y[2]", 7),
        pair("a[0]", "y[0]", 4),
        pair("b[0]", "y[0]", 4),
    }


def test_matrix_vector_matmul():
    shapes = {"a": (5, 3), "b": (3,), "y": (5,)}
    found = couple(OpKind.MATMUL, shapes, ["a", "b"], ["y"])
    assert identity_links(found) == {pair("a[1]", "b[0]", 3), pair("a[0]", "y[0]", 5)}


def test_batch_norm_couples_its_parameters_to_the_channel_dim():
    shapes = {"x": (2, 3, 4, 4), "w": (3,), "b": (3,), "y": (2, 3, 4, 4)}
    found = couple(OpKind.NORM, shapes, ["x", "w", "b"], ["y"], {"channel_dims": (1,)})
    assert identity_links(found) == {
        pair("x[0]", "y[0]", 2),
        pair("x[1]", "y[1]", 3),
        pair("x[2]", "y[2]", 4),
        pair("x[3]", "y[3]", 4),
        pair("w[0]", "x[1]", 3),
        pair("b[0]", "x[1]", 3),
    }


def test_layer_norm_over_the_last_dim():
    shapes = {"x": (2, 5, 8), "w": (8,), "y": (2, 5, 8)}
    found = couple(OpKind.NORM, shapes, ["x", "w"], ["y"], {"channel_dims": (2,), "mixes": True})
    assert pair("w[0]", "x[2]", 8) in identity_links(found)


def test_group_norm_factors_channels_into_groups():
    shapes = {"x": (2, 6, 4), "w": (6,), "y": (2, 6, 4), "g": (3,), "gw": (2,)}
    found = couple(OpKind.NORM, shapes, ["x", "w"], ["y"], {"channel_dims": (1,), "num_groups": 3}, axes=["g", "gw"])
    assert factor_links(found) == {("x[1]", ("g[0]", "gw[0]"), (3, 2))}


def test_norm_parameter_of_the_wrong_rank_is_reported_against_the_op():
    shapes = {"x": (2, 3), "w": (3, 1), "y": (2, 3)}
    with pytest.raises(GraphError, match=r"op op0 aten.x in m: parameter w has rank 2, expected 1"):
        couple(OpKind.NORM, shapes, ["x", "w"], ["y"], {"channel_dims": (1,)})


def test_reduce_drops_the_reduced_dim():
    shapes = {"x": (2, 3, 4), "y": (2, 3)}
    found = couple(OpKind.REDUCE, shapes, ["x"], ["y"], {"dims": (-1,)})
    assert identity_links(found) == {pair("x[0]", "y[0]", 2), pair("x[1]", "y[1]", 3)}
    # the reduced dim is folded into one: coupled to nothing further, and its channels mix
    assert [c for c in found if not isinstance(c, Link)] == [Mix(d("x", 2), Mixing.REDUCTION, OpId("op0"))]


def test_reduce_with_keepdim_keeps_the_positions_of_the_other_dims():
    shapes = {"x": (2, 3, 4), "y": (2, 1, 4)}
    found = couple(OpKind.REDUCE, shapes, ["x"], ["y"], {"dims": (1,), "keepdim": True})
    assert identity_links(found) == {pair("x[0]", "y[0]", 2), pair("x[2]", "y[2]", 4)}
    assert Mix(d("x", 1), Mixing.REDUCTION, OpId("op0")) in found


def test_reduce_inside_a_normalisation_layer_is_a_normalisation():
    shapes = {"x": (2, 3, 4), "y": (2, 3, 1)}
    found = couple(OpKind.REDUCE, shapes, ["x"], ["y"], {"dims": (2,), "keepdim": True, "normalises": True})
    assert Mix(d("x", 2), Mixing.NORMALISATION, OpId("op0")) in found


@pytest.mark.parametrize("how", ["softmax", "cumulative"])
def test_mix_links_every_dim_and_marks_the_mixed_one(how):
    shapes = {"x": (2, 3, 4), "y": (2, 3, 4)}
    found = couple(OpKind.MIX, shapes, ["x"], ["y"], {"dims": (1,), "how": how})
    assert identity_links(found) == {pair("x[0]", "y[0]", 2), pair("x[1]", "y[1]", 3), pair("x[2]", "y[2]", 4)}
    assert [c for c in found if not isinstance(c, Link)] == [Mix(d("x", 1), Mixing(how), OpId("op0"))]


def test_mix_needs_a_known_way_of_mixing():
    shapes = {"x": (2, 3), "y": (2, 3)}
    with pytest.raises(GraphError, match="'how' must be 'softmax' or 'cumulative'"):
        couple(OpKind.MIX, shapes, ["x"], ["y"], {"dims": (1,), "how": "blend"})


def test_layer_norm_mixes_its_channel_dims_and_group_norm_only_within_groups():
    shapes = {"x": (2, 8, 5), "w": (8,), "y": (2, 8, 5)}
    found = couple(OpKind.NORM, shapes, ["x", "w"], ["y"], {"channel_dims": (1,), "mixes": True})
    assert [c for c in found if isinstance(c, Mix)] == [Mix(d("x", 1), Mixing.NORMALISATION, OpId("op0"))]
    shapes = {**shapes, "g": (4,), "p": (2,)}
    op = Op(
        OpId("op0"),
        OpKind.NORM,
        "aten.x",
        ("x", "w"),
        ("y",),
        "m",
        {"channel_dims": (1,), "num_groups": 4, "mixes": True},
        axes=("g", "p"),
    )
    found = couplings_of(op, lambda v: shapes[v])
    assert [c for c in found if isinstance(c, Mix)] == [Mix(d("p", 0), Mixing.NORMALISATION, OpId("op0"))]


# -- concat, split, slice ------------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, -2])
def test_concat_places_each_input_at_its_offset(dim):
    shapes = {"a": (2, 3, 4), "b": (2, 5, 4), "y": (2, 8, 4)}
    found = couple(OpKind.CONCAT, shapes, ["a", "b"], ["y"], {"dim": dim})
    assert other_links(found) == {("a[1]", "y[1]", Offset(0, 3, 8)), ("b[1]", "y[1]", Offset(3, 5, 8))}
    assert identity_links(found) == {
        pair("a[0]", "y[0]", 2),
        pair("a[2]", "y[2]", 4),
        pair("b[0]", "y[0]", 2),
        pair("b[2]", "y[2]", 4),
    }
    assert not pins(found)


def test_concat_skips_legacy_empty_inputs():
    shapes = {"a": (2, 3), "e": (0,), "b": (2, 2), "y": (2, 5)}
    found = couple(OpKind.CONCAT, shapes, ["a", "e", "b"], ["y"], {"dim": 1})
    assert other_links(found) == {("a[1]", "y[1]", Offset(0, 3, 5)), ("b[1]", "y[1]", Offset(3, 2, 5))}


@pytest.mark.parametrize("total", [6, 10])
def test_concat_whose_output_is_not_the_sum_is_reported_against_the_op(total):
    shapes = {"a": (2, 4), "b": (2, 4), "y": (2, total)}
    with pytest.raises(GraphError, match=r"op op0 aten.x in m: "):
        couple(OpKind.CONCAT, shapes, ["a", "b"], ["y"], {"dim": 1})


def test_split_with_unequal_sizes_gives_offset_links():
    shapes = {"x": (2, 6), "a": (2, 2), "b": (2, 4)}
    found = couple(OpKind.SPLIT, shapes, ["x"], ["a", "b"], {"dim": 1})
    assert other_links(found) == {("a[1]", "x[1]", Offset(0, 2, 6)), ("b[1]", "x[1]", Offset(2, 4, 6))}
    assert identity_links(found) == {pair("x[0]", "a[0]", 2), pair("x[0]", "b[0]", 2)}
    assert not factor_links(found)


def test_chunk_gives_a_factor_link_with_an_unprunable_count():
    # equal pieces: code re-splits by count, so every piece loses the same positions
    shapes = {"x": (2, 6), "a": (2, 3), "b": (2, 3)}
    found = couple(OpKind.SPLIT, shapes, ["x"], ["a", "b"], {"dim": 1})
    assert factor_links(found) == {("x[1]", (None, "a[1]"), (2, 3))}
    assert pair("a[1]", "b[1]", 3) in identity_links(found)
    assert not other_links(found)


def test_chunk_into_single_channels_pins_the_split_dim():
    shapes = {"x": (2, 3), "a": (2, 1), "b": (2, 1), "c": (2, 1)}
    found = couple(OpKind.SPLIT, shapes, ["x"], ["a", "b", "c"], {"dim": 1})
    assert pins(found) == {"x[1]": SETS_SIZE}


@pytest.mark.parametrize("sizes", [(2, 3), (2, 5)])
def test_split_whose_pieces_do_not_cover_the_input_is_reported(sizes):
    shapes = {"x": (2, 6), "a": (2, sizes[0]), "b": (2, sizes[1])}
    with pytest.raises(GraphError, match=r"op op0 aten.x in m: "):
        couple(OpKind.SPLIT, shapes, ["x"], ["a", "b"], {"dim": 1})


def test_unbind_drops_the_split_dim():
    shapes = {"x": (3, 2, 5), "a": (2, 5), "b": (2, 5), "c": (2, 5)}
    found = couple(OpKind.SPLIT, shapes, ["x"], ["a", "b", "c"], {"dim": 0, "squeeze": True})
    assert pair("x[1]", "a[0]", 2) in identity_links(found)
    assert pair("x[2]", "c[1]", 5) in identity_links(found)
    assert pins(found) == {"x[0]": SETS_SIZE}


def test_slice_is_a_window():
    shapes = {"x": (2, 10), "y": (2, 4)}
    found = couple(OpKind.SLICE, shapes, ["x"], ["y"], {"dim": 1, "start": 1, "step": 2})
    (link,) = (c for c in found if isinstance(c, Link) and c.src == d("x", 1))
    assert link.map.forward(range(10)) == (0, 1, 2, 3)
    assert link.map.domain() == (1, 3, 5, 7)


# -- reshape, permute ------------------------------------------------------------------------


def test_reshape_into_heads_gives_a_factor_link():
    # (B, T, C) -> (B, T, H, D): C is the row-major product of heads and head dims
    shapes = {"x": (2, 5, 12), "y": (2, 5, 3, 4)}
    found = couple(OpKind.RESHAPE, shapes, ["x"], ["y"])
    assert factor_links(found) == {("x[2]", ("y[2]", "y[3]"), (3, 4))}
    assert identity_links(found) == {pair("x[0]", "y[0]", 2), pair("x[1]", "y[1]", 5)}
    assert not pins(found)


def test_reshape_merging_heads_back():
    shapes = {"x": (2, 5, 3, 4), "y": (2, 5, 12)}
    found = couple(OpKind.RESHAPE, shapes, ["x"], ["y"])
    assert factor_links(found) == {("y[2]", ("x[2]", "x[3]"), (3, 4))}


def test_flatten_gives_a_factor_link_over_channels_and_positions():
    shapes = {"x": (2, 3, 4, 5), "y": (2, 60)}
    found = couple(OpKind.RESHAPE, shapes, ["x"], ["y"])
    assert factor_links(found) == {("y[1]", ("x[1]", "x[2]", "x[3]"), (3, 4, 5))}
    assert identity_links(found) == {pair("x[0]", "y[0]", 2)}


def test_flatten_of_a_pooled_map_is_an_identity():
    shapes = {"x": (2, 3, 1, 1), "y": (2, 3)}
    found = couple(OpKind.RESHAPE, shapes, ["x"], ["y"])
    assert identity_links(found) == {pair("x[0]", "y[0]", 2), pair("x[1]", "y[1]", 3)}
    assert not factor_links(found)


def test_reshape_that_regroups_dims_pins_them():
    shapes = {"x": (2, 3), "y": (3, 2)}
    found = couple(OpKind.RESHAPE, shapes, ["x"], ["y"])
    assert set(pins(found)) == {"x[0]", "x[1]", "y[0]", "y[1]"}
    assert pins(found)["x[0]"] == "op0 aten.x in m regroups dims (0, 1) of (2, 3) into dims (0, 1) of (3, 2)"


def test_permute_remaps_dims():
    shapes = {"x": (2, 3, 4), "y": (4, 2, 3)}
    found = couple(OpKind.PERMUTE, shapes, ["x"], ["y"], {"perm": (2, 0, 1)})
    assert identity_links(found) == {pair("x[2]", "y[0]", 4), pair("x[0]", "y[1]", 2), pair("x[1]", "y[2]", 3)}
    assert couple(OpKind.PERMUTE, shapes, ["x"], ["y"], {"perm": (-1, 0, -2)}) == found


def test_permute_longer_than_the_output_is_reported_against_the_op():
    shapes = {"x": (2, 3), "y": (3, 2)}
    with pytest.raises(GraphError, match=r"op op0 aten.x in m: its values do not fit a permute op"):
        couple(OpKind.PERMUTE, shapes, ["x"], ["y"], {"perm": (1, 0, 2)})


# -- attention, pixel shuffle, opaque --------------------------------------------------------


def test_attention_couples_queries_keys_values_and_heads():
    shapes = {"q": (2, 4, 5, 8), "k": (2, 4, 6, 8), "v": (2, 4, 6, 16), "y": (2, 4, 5, 16), "mask": (5, 6)}
    found = couple(OpKind.ATTENTION, shapes, ["q", "k", "v", "mask"], ["y"])
    assert identity_links(found) == {
        pair("q[3]", "k[3]", 8),  # the dot product's dim
        pair("v[3]", "y[3]", 16),
        pair("q[2]", "y[2]", 5),  # queries
        pair("k[2]", "v[2]", 6),  # keys and values
        pair("mask[1]", "k[2]", 6),
        pair("mask[0]", "q[2]", 5),
        *(pair(f"{t}[{i}]", f"y[{i}]", n) for t in "qkv" for i, n in ((0, 2), (1, 4))),  # batch, heads
    }
    assert not pins(found)


@pytest.mark.parametrize("inverse", [False, True])
def test_pixel_shuffle_factors_channels_with_unprunable_factors(inverse):
    wide, narrow = (2, 8, 3, 3), (2, 2, 6, 6)
    shapes = {"x": narrow, "y": wide} if inverse else {"x": wide, "y": narrow}
    found = couple(OpKind.PIXEL_SHUFFLE, shapes, ["x"], ["y"], {"factor": 2, "inverse": inverse})
    fine, part = ("y[1]", "x[1]") if inverse else ("x[1]", "y[1]")
    assert factor_links(found) == {(fine, (part, None, None), (2, 2, 2))}
    assert identity_links(found) == {pair("x[0]", "y[0]", 2)}
    assert set(pins(found)) == {"x[2]", "x[3]", "y[2]", "y[3]"}


def test_opaque_pins_every_dim_larger_than_one_naming_the_op():
    shapes = {"x": (1, 8, 3, 3), "w": (5,), "y": (1, 2, 6, 1)}
    found = couple(OpKind.OPAQUE, shapes, ["x", "w"], ["y"])
    assert all(isinstance(c, Pin) for c in found)
    assert pins(found) == dict.fromkeys(["x[1]", "x[2]", "x[3]", "w[0]", "y[1]", "y[2]"], "unsupported op aten.x in m")


# -- couplings_of ----------------------------------------------------------------------------


def test_a_rule_table_without_the_kind_is_an_error_naming_the_op():
    table = types.MappingProxyType({k: r for k, r in RULES.items() if k is not OpKind.CONV})
    with pytest.raises(GraphError, match=r"op op0 aten.x in m: no coupling rule for kind 'conv'"):
        couple(OpKind.CONV, {"x": (1,), "w": (1,), "y": (1,)}, ["x", "w"], ["y"], rules=table)


def test_a_replacement_table_changes_the_rule_and_unmentioned_dims_are_pinned():
    table = types.MappingProxyType({**RULES, OpKind.ELEMENTWISE: lambda op, shape: []})
    found = couple(OpKind.ELEMENTWISE, {"a": (2, 3), "y": (2, 3)}, ["a"], ["y"], rules=table)
    assert pins(found) == dict.fromkeys(["a[0]", "a[1]", "y[0]", "y[1]"], SETS_SIZE)
    assert len(couple(OpKind.ELEMENTWISE, {"a": (2, 3), "y": (2, 3)}, ["a"], ["y"])) == 2
