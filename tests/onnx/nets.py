"""Small ONNX models built with onnx.helper (no torch): a builder, and hypothesis strategies of random CNNs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class Net:
    """Builds a model node by node; keeps the current tensor and its (C, H, W)."""

    def __init__(self, seed: int = 0, channels: int = 3, size: int = 8) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0
        self.x = "x"
        self.c, self.h, self.w = channels, size, size
        self.input_shape = ("N", channels, size, size)

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def weight(self, *shape: int, positive: bool = False) -> str:
        name = self.name("w")
        array = self.rng.standard_normal(shape).astype(np.float32)
        if positive:
            array = np.abs(array) + 0.5
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def ints(self, values: list[int]) -> str:
        name = self.name("i")
        self.inits.append(numpy_helper.from_array(np.array(values, dtype=np.int64), name))
        return name

    def node(self, op: str, inputs: list[str], n_out: int = 1, **attrs: object) -> list[str]:
        outs = [self.name("t") for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=self.name(op.lower()), **attrs))
        return outs

    # -- layers --------------------------------------------------------------------
    def conv(
        self, out: int, k: int = 3, groups: int = 1, bias: bool = True, x: str | None = None, c: int | None = None
    ) -> str:
        x, c = x or self.x, c or self.c
        inputs = [x, self.weight(out, c // groups, k, k)] + ([self.weight(out)] if bias else [])
        (y,) = self.node("Conv", inputs, pads=[k // 2] * 4, group=groups)
        self.x, self.c = y, out
        return y

    def bn(self) -> str:
        c = self.c
        (y,) = self.node(
            "BatchNormalization",
            [self.x, self.weight(c), self.weight(c), self.weight(c), self.weight(c, positive=True)],
        )
        self.x = y
        return y

    def act(self, op: str) -> str:
        (y,) = self.node(op, [self.x])
        self.x = y
        return y

    def build(self, head: str = "gemm", classes: int = 5) -> onnx.ModelProto:
        if head == "gemm":
            (g,) = self.node("GlobalAveragePool", [self.x])
            (f,) = self.node("Flatten", [g], axis=1)
            (y,) = self.node("Gemm", [f, self.weight(classes, self.c), self.weight(classes)], transB=1)
        elif head == "flatten":
            (f,) = self.node("Flatten", [self.x], axis=1)
            (y,) = self.node("Gemm", [f, self.weight(self.c * self.h * self.w, classes)])
        else:  # a mean over space, then MatMul with an (in, out) weight
            (m,) = self.node("ReduceMean", [self.x], axes=[2, 3], keepdims=0)
            (y,) = self.node("MatMul", [m, self.weight(self.c, classes)])
        graph = helper.make_graph(
            self.nodes,
            "net",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(self.input_shape))],
            [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["N", classes])],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


# -- blocks: each takes the builder and a draw function ------------------------------------
Block = Callable[[Net, st.DrawFn], None]


def conv_bn_act(net: Net, draw: st.DrawFn) -> None:
    net.conv(draw(st.integers(4, 10)), k=draw(st.sampled_from([1, 3])), bias=draw(st.booleans()))
    if draw(st.booleans()):
        net.bn()
    net.act(draw(st.sampled_from(["Relu", "Sigmoid", "HardSwish", "Tanh", "LeakyRelu"])))


def depthwise(net: Net, draw: st.DrawFn) -> None:
    net.conv(net.c, k=3, groups=net.c)
    net.act("Relu")


def residual(net: Net, draw: st.DrawFn) -> None:
    skip = net.x
    net.conv(net.c, k=3)
    net.bn()
    (y,) = net.node("Add", [net.x, skip])
    net.x = y


def concat(net: Net, draw: st.DrawFn) -> None:
    x, c = net.x, net.c
    a = net.conv(draw(st.integers(2, 6)), k=1, x=x, c=c)
    ca = net.c
    b = net.conv(draw(st.integers(2, 6)), k=3, x=x, c=c)
    (y,) = net.node("Concat", [a, b], axis=1)
    net.x, net.c = y, ca + net.c


def split(net: Net, draw: st.DrawFn) -> None:
    first = draw(st.integers(1, net.c - 1)) if net.c > 1 else 0
    if not first:
        return
    c = net.c
    a, b = net.node("Split", [net.x, net.ints([first, c - first])], n_out=2, axis=1)
    a2 = net.conv(first, k=1, x=a, c=first)
    (y,) = net.node("Concat", [b, a2], axis=1)
    net.x, net.c = y, c


def slice_channels(net: Net, draw: st.DrawFn) -> None:
    if net.c < 3:
        return
    start = draw(st.integers(0, net.c - 2))
    end = draw(st.integers(start + 1, net.c))
    (y,) = net.node("Slice", [net.x, net.ints([start]), net.ints([end]), net.ints([1])])
    net.x, net.c = y, end - start


def scale(net: Net, draw: st.DrawFn) -> None:
    (y,) = net.node("Mul", [net.x, net.weight(net.c, 1, 1)])
    net.x = y


def pool(net: Net, draw: st.DrawFn) -> None:
    if net.h < 4:
        return
    op = draw(st.sampled_from(["MaxPool", "AveragePool"]))
    (y,) = net.node(op, [net.x], kernel_shape=[2, 2], strides=[2, 2])
    net.x, net.h, net.w = y, net.h // 2, net.w // 2


def shuffle(net: Net, draw: st.DrawFn) -> None:
    """Channel shuffle: reshape into (groups, C/groups), transpose, reshape back."""
    if net.c % 2:
        net.conv(net.c + 1, k=1)
    g = 2
    (r,) = net.node("Reshape", [net.x, net.ints([0, g, net.c // g, net.h, net.w])])
    (t,) = net.node("Transpose", [r], perm=[0, 2, 1, 3, 4])
    (y,) = net.node("Reshape", [t, net.ints([0, net.c, net.h, net.w])])
    net.x = y


def norm(net: Net, draw: st.DrawFn) -> None:
    (y,) = net.node("InstanceNormalization", [net.x, net.weight(net.c), net.weight(net.c)])
    net.x = y


def softmax(net: Net, draw: st.DrawFn) -> None:
    (y,) = net.node("Softmax", [net.x], axis=1)
    net.x = y


BLOCKS: tuple[Block, ...] = (
    conv_bn_act,
    depthwise,
    residual,
    concat,
    split,
    slice_channels,
    scale,
    pool,
    shuffle,
    norm,
    softmax,
)


@st.composite
def cnns(draw: st.DrawFn, blocks: tuple[Block, ...] = BLOCKS) -> onnx.ModelProto:
    """A random small CNN: a stem conv, 1–4 random blocks, a random head."""
    net = Net(seed=draw(st.integers(0, 2**16)))
    net.conv(draw(st.integers(4, 8)))
    for block in draw(st.lists(st.sampled_from(blocks), min_size=1, max_size=4)):
        block(net, draw)
    return net.build(draw(st.sampled_from(["gemm", "flatten", "matmul"])))
