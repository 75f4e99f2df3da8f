"""Einsum: matrix-product and transpose equations map onto the core's ops, the rest stays opaque with a reason."""

from __future__ import annotations

import doctest

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import prune_onnx as po
from prune_graph import OpKind
from prune_onnx import _einsum
from prune_onnx._spec import Context, Spec
from prune_ops import GroupKind

HIDDEN = 6


def einsum_model(
    equation: str,
    weight_shape: tuple[int, ...],
    x_shape: tuple[int, ...] = (2, 5, 8),
    weight_first: bool = False,
    y_shape: tuple[int, ...] = (2, 5, 3),
) -> onnx.ModelProto:
    """x → MatMul (8 → 6) → Relu → Einsum with a weight → MatMul (→ 3): the einsum between two prunable groups."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, HIDDEN)).astype(np.float32), "W0"),
        numpy_helper.from_array(rng.standard_normal(weight_shape).astype(np.float32), "W1"),
        numpy_helper.from_array(rng.standard_normal((HIDDEN, 3)).astype(np.float32), "W2"),
    ]
    operands = ["W1", "r"] if weight_first else ["r", "W1"]
    nodes = [
        helper.make_node("MatMul", ["x", "W0"], ["h"], "fc0"),
        helper.make_node("Relu", ["h"], ["r"], "relu"),
        helper.make_node("Einsum", operands, ["e"], "ein", equation=equation),
        helper.make_node("MatMul", ["e", "W2"], ["y"], "fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "einsum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y_shape))],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


LINEAR = [
    ("bsd,od->bso", (HIDDEN, HIDDEN), False, (2, 5, 3)),
    ("bsd,do->bso", (HIDDEN, HIDDEN), False, (2, 5, 3)),
    ("...d,do->...o", (HIDDEN, HIDDEN), False, (2, 5, 3)),
    ("...i,ji", (HIDDEN, HIDDEN), False, (2, 5, 3)),  # implicit output
    ("od,bsd->bso", (HIDDEN, HIDDEN), True, (2, 5, 3)),
    ("bij,bjk->bik", (2, HIDDEN, HIDDEN), False, (2, 5, 3)),  # a batched weight: bmm
    ("b s d , o d -> b s o", (HIDDEN, HIDDEN), False, (2, 5, 3)),
    ("bsd,hed->bhse", (2, HIDDEN, HIDDEN), False, (2, 2, 5, 3)),  # a projection into heads
    ("hed,bsd->bhse", (2, HIDDEN, HIDDEN), True, (2, 2, 5, 3)),
]


@pytest.mark.parametrize(("equation", "weight_shape", "weight_first", "y_shape"), LINEAR)
def test_linear_like_equations_prune_on_both_sides(
    equation: str, weight_shape: tuple[int, ...], weight_first: bool, y_shape: tuple[int, ...]
) -> None:
    model = einsum_model(equation, weight_shape, weight_first=weight_first, y_shape=y_shape)
    graph = po.trace(model)
    kinds = [op.kind for op in graph.ops if op.owner == "ein"]
    assert OpKind.MATMUL in kinds
    assert set(kinds) <= {OpKind.MATMUL, OpKind.PERMUTE, OpKind.RESHAPE}
    prunable = graph.groups().prunable
    assert sorted(g.size for g in prunable) == [HIDDEN, HIDDEN]  # the einsum's input and output channels
    assert all("ein.W1" in " ".join(m.label for m in g.parameters) for g in prunable)
    pruned, report = po.prune(model, ratio=0.5)
    onnx.checker.check_model(pruned, full_check=True)
    assert report.after.macs < report.before.macs
    assert po.check_equivalence(model, pruned, report.plan).ok


def attention_by_einsum(heads: int = 4, head_dim: int = 2, length: int = 5) -> onnx.ModelProto:
    """Queries, keys and values as (B, H, L, E); scores and context by Einsum, as torch.einsum exports them."""
    rng = np.random.default_rng(1)
    width = heads * head_dim
    inits = [
        numpy_helper.from_array(np.array([1, length, heads, head_dim], dtype=np.int64), "split"),
        numpy_helper.from_array(np.array([1, length, width], dtype=np.int64), "merge"),
        numpy_helper.from_array(np.array(head_dim**-0.5, dtype=np.float32), "scale"),
        numpy_helper.from_array(rng.standard_normal((width, 8)).astype(np.float32), "Wo"),
    ]
    nodes = []
    for t in "qkv":
        inits.append(numpy_helper.from_array(rng.standard_normal((8, width)).astype(np.float32), f"W{t}"))
        nodes += [
            helper.make_node("MatMul", ["x", f"W{t}"], [f"{t}p"], f"proj_{t}"),
            helper.make_node("Reshape", [f"{t}p", "split"], [f"{t}r"], f"split_{t}"),
            helper.make_node("Transpose", [f"{t}r"], [t], f"heads_{t}", perm=[0, 2, 1, 3]),
        ]
    nodes += [
        helper.make_node("Einsum", ["q", "k"], ["s"], "scores", equation="bhqd,bhkd->bhqk"),
        helper.make_node("Mul", ["s", "scale"], ["ss"], "scaled"),
        helper.make_node("Softmax", ["ss"], ["p"], "softmax", axis=-1),
        helper.make_node("Einsum", ["p", "v"], ["c"], "context", equation="bhqk,bhkd->bqhd"),
        helper.make_node("Reshape", ["c", "merge"], ["a"], "merge_heads"),
        helper.make_node("MatMul", ["a", "Wo"], ["y"], "out"),
    ]
    graph = helper.make_graph(
        nodes,
        "einsum_attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, length, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, length, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_attention_written_with_einsum_prunes_heads() -> None:
    model = attention_by_einsum()
    graph = po.trace(model)
    assert not any(op.kind is OpKind.OPAQUE for op in graph.ops)
    heads = [g for g in graph.groups().prunable if g.kind is GroupKind.HEADS]
    assert [g.size for g in heads] == [4]
    pruned, report = po.prune(model, ratio=0.5)
    onnx.checker.check_model(pruned, full_check=True)
    assert [t.dims for t in pruned.graph.initializer if t.name == "Wq"] == [[8, 4]]
    assert po.check_equivalence(model, pruned, report.plan).ok
    feeds = po.random_inputs(graph)
    assert not np.allclose(po.run(model, feeds)[0], po.run(pruned, feeds)[0], atol=1e-3)


def one_operand_model(equation: str, out_shape: list[int]) -> onnx.ModelProto:
    rng = np.random.default_rng(2)
    inits = [
        numpy_helper.from_array(rng.standard_normal((HIDDEN, 3, 1, 1)).astype(np.float32), "W0"),
        numpy_helper.from_array(rng.standard_normal((4, HIDDEN, 1, 1)).astype(np.float32), "W1"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "W0"], ["h"], "conv0"),
        helper.make_node("Einsum", ["h"], ["e"], "ein", equation=equation),
        helper.make_node("Conv", ["e", "W1"], ["y"], "conv1"),
    ]
    graph = helper.make_graph(
        nodes,
        "transpose",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize(
    ("equation", "kinds"), [("bchw->bchw", [OpKind.ELEMENTWISE]), ("bchw->bcwh", [OpKind.PERMUTE])]
)
def test_one_operand_equations_are_copies_or_transposes(equation: str, kinds: list[OpKind]) -> None:
    model = one_operand_model(equation, [1, 4, 4, 4])
    graph = po.trace(model)
    assert [op.kind for op in graph.ops if op.owner == "ein"] == kinds
    pruned, report = po.prune(model, ratio=0.5)
    assert [t.dims for t in pruned.graph.initializer if t.name == "W0"] == [[3, 3, 1, 1]]
    assert po.check_equivalence(model, pruned, report.plan).ok


def test_a_sum_in_one_operand_is_a_reduction_that_mixes() -> None:
    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node("MatMul", ["x", "W0"], ["h"], "fc0"),
        helper.make_node("Einsum", ["h"], ["e"], "ein", equation="bsd->bs"),
    ]
    graph = helper.make_graph(
        nodes,
        "sum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 8])],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 5])],
        [numpy_helper.from_array(rng.standard_normal((8, HIDDEN)).astype(np.float32), "W0")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    po_graph = po.trace(model)
    assert [op.kind for op in po_graph.ops if op.owner == "ein"] == [OpKind.REDUCE]
    (group,) = [g for g in po_graph.groups().groups if "fc0.W0[1]" in {m.label for m in g.parameters}]
    assert group.mixing  # never a silent prune of summed channels
    _, report = po.prune(model, ratio=0.5)
    assert report.plan.is_empty


OPAQUE = [
    ("ii->i", [(HIDDEN, HIDDEN)], "repeated"),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)], "3 operands"),
    ("ij,kl->ijkl", [(2, 3), (4, 5)], "0 contracted"),
    ("ijk,ijk->i", [(2, 3, 4), (2, 3, 4)], "2 contracted"),
    ("ij,j->", [(2, 3), (3,)], "one operand only"),
    ("bij,bjk->bik", [(2, 3, 4), (1, 4, 5)], "broadcast"),
    ("bij,bjk->bikq", [(2, 3, 4), (2, 4, 5)], "malformed"),
    ("ij...,jk->ik", [(2, 3), (3, 4, 5)], "does not fit"),
    ("iJ,Jk", [(2, 3), (3, 4)], "does not fit"),  # implicit output of mixed case: the order is the runtime's
    ("bhse,ohe->bso", [(1, 2, 5, 3), (4, 2, 3)], "2 contracted"),
]


@pytest.mark.parametrize(("equation", "shapes", "why"), OPAQUE)
def test_other_equations_stay_opaque_and_say_why(equation: str, shapes: list[tuple[int, ...]], why: str) -> None:
    names = [f"in{i}" for i in range(len(shapes))]
    node = helper.make_node("Einsum", names, ["out"], "ein", equation=equation)
    shape_of = dict(zip(names, shapes))
    (spec,) = _einsum.einsum(node, Context(shape_of, {}, frozenset(), 17))
    assert spec.kind is OpKind.OPAQUE
    assert why in str(spec.attrs["why"])


def test_an_output_shape_other_than_the_equation_says_is_opaque() -> None:
    node = helper.make_node("Einsum", ["in0", "in1"], ["out"], "ein", equation="ij,jk->ki")
    shapes = {"in0": (2, 3), "in1": (3, 4), "out": (2, 4)}
    (spec,) = _einsum.einsum(node, Context(shapes, {}, frozenset(), 17))
    assert spec.kind is OpKind.OPAQUE
    assert "not the" in str(spec.attrs["why"])


def test_parse_doctests() -> None:
    assert doctest.testmod(_einsum).failed == 0


def _run_chain(specs: list[Spec], arrays: dict[str, np.ndarray], out: str, shape: tuple[int, ...]) -> np.ndarray:
    """The op chain an Einsum maps onto, evaluated with numpy: what the couplings describe."""
    values = dict(arrays)
    for spec in specs:
        made = dict(spec.made)
        x = [values[i] for i in spec.inputs]
        if spec.kind is OpKind.PERMUTE:
            y = np.transpose(x[0], spec.attrs["perm"])  # type: ignore[arg-type]
        elif spec.kind is OpKind.MATMUL:
            y = np.matmul(x[0], x[1])
        elif spec.kind is OpKind.RESHAPE:
            y = x[0].reshape(made.get(spec.outputs[0], shape))
        elif spec.kind is OpKind.REDUCE:
            y = x[0].sum(axis=tuple(spec.attrs["dims"]))  # type: ignore[arg-type]
        else:
            assert spec.kind is OpKind.ELEMENTWISE
            y = x[0]
        if spec.outputs[0] in made:
            assert y.shape == made[spec.outputs[0]]
        values[spec.outputs[0]] = y
    return values[out]


@st.composite
def equations(draw: st.DrawFn) -> tuple[str, list[tuple[int, ...]]]:
    letters = iter(draw(st.permutations("abcdefghij")))
    batch = [next(letters) for _ in range(draw(st.integers(0, 2)))]
    free_a = [next(letters) for _ in range(draw(st.integers(0, 2)))]
    free_b = [next(letters) for _ in range(draw(st.integers(0, 2)))]
    k = next(letters)
    a = draw(st.permutations([*batch, *free_a, k]))
    b = draw(st.permutations([*batch, *free_b, k]))
    out = draw(st.permutations([*batch, *free_a, *free_b]))
    sizes = {c: draw(st.integers(2, 4)) for c in [*batch, *free_a, *free_b, k]}
    return f"{''.join(a)},{''.join(b)}->{''.join(out)}", [tuple(sizes[c] for c in a), tuple(sizes[c] for c in b)]


@settings(deadline=None, max_examples=60)
@given(case=equations(), weight_first=st.booleans(), seed=st.integers(0, 2**16))
def test_every_two_operand_product_maps_onto_ops_that_compute_it(
    case: tuple[str, list[tuple[int, ...]]], weight_first: bool, seed: int
) -> None:
    equation, shapes = case
    rng = np.random.default_rng(seed)
    arrays = {f"in{i}": rng.standard_normal(s) for i, s in enumerate(shapes)}
    expected = np.einsum(equation, *arrays.values())
    node = helper.make_node("Einsum", list(arrays), ["out"], "ein", equation=equation)
    weights = frozenset({"in0"} if weight_first else set())
    ctx = Context({**{n: a.shape for n, a in arrays.items()}, "out": expected.shape}, {}, weights, 17)
    specs = _einsum.einsum(node, ctx)
    assert all(s.kind is not OpKind.OPAQUE for s in specs)
    assert sum(s.kind is OpKind.MATMUL for s in specs) == 1
    np.testing.assert_allclose(_run_chain(specs, arrays, "out", expected.shape), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("equation", "shape"),
    [("bij->bji", (2, 3, 4)), ("bij->jb", (2, 3, 4)), ("ij->ij", (2, 3)), ("i...j->j...", (2, 3, 4))],
)
def test_one_operand_equations_map_onto_ops_that_compute_them(equation: str, shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(0).standard_normal(shape)
    expected = np.einsum(equation, x)
    node = helper.make_node("Einsum", ["in0"], ["out"], "ein", equation=equation)
    specs = _einsum.einsum(node, Context({"in0": shape, "out": expected.shape}, {}, frozenset(), 17))
    np.testing.assert_allclose(_run_chain(specs, {"in0": x}, "out", expected.shape), expected)
