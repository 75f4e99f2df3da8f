"""``Einsum`` onto prune-graph ops: a (batched) matrix product between transposes, or a transpose.

Two operands: every letter is a batch letter (both operands and the output), the contracted
letter (both operands, not the output), or a free letter of one operand (and the output). The
node becomes ``transpose(a) @ transpose(b)`` followed by a transpose to the output's order, ops
of the core whose couplings say exactly how the channels travel: ``bhqd,bhkd->bhqk`` (attention
scores), ``bhqk,bhkd->bhqd`` (attention values), ``bsd,od->bso`` and ``...i,ji->...j`` (a linear
layer), ``bsd,hed->bhse`` (a projection into heads), ``bij,bjk->bik`` (bmm). One operand: a transpose (``ij->ji``), after a sum over the letters
the output drops (a reduction, which mixes them).

Opaque, because no chain of these ops computes them: more than two operands, a letter repeated
in one operand (diagonals, traces), no contracted letter or more than one (outer products,
double contractions, which would need a weight reshaped before it is read), a letter summed in
one operand only, broadcast sizes.
"""

from __future__ import annotations

import string

import onnx

from prune_graph import OpKind
from prune_onnx._spec import Context, Spec, attr, data, outs

__all__ = ["einsum", "parse"]

_LETTERS = set(string.ascii_letters)


def parse(equation: str, ranks: list[int]) -> tuple[list[list[str]], list[str]] | None:
    """The letters of each operand and of the output, ``...`` expanded; ``None`` when malformed.

    Ellipsis dims become the symbols ``0``, ``1``, ... aligned from the right, as broadcasting
    aligns them.

    >>> parse("...d,od->...o", [3, 2])
    ([['1', '0', 'd'], ['o', 'd']], ['1', '0', 'o'])
    >>> parse("ij,jk", [2, 2])
    ([['i', 'j'], ['j', 'k']], ['i', 'k'])
    """
    text = equation.replace(" ", "")
    left, arrow, right = text.partition("->")
    terms = left.split(",")
    if len(terms) != len(ranks):
        return None
    widest = 0
    operands: list[list[str]] = []
    for term, rank in zip(terms, ranks):
        head, dots, tail = term.partition("...")
        if not set(head + tail) <= _LETTERS or "..." in tail:
            return None
        width = rank - len(head) - len(tail)
        if width < 0 or (width and not dots):
            return None
        widest = max(widest, width)
        operands.append([*head, *(str(width - 1 - i) for i in range(width)), *tail])
    if arrow:
        head, dots, tail = right.partition("...")
        if not set(head + tail) <= _LETTERS:
            return None
        out = [*head, *(str(widest - 1 - i) for i in range(widest if dots else 0)), *tail]
    else:
        # implicit output: the ellipsis, then the letters seen once, in alphabetical order (where
        # capitals sort against small letters is left to runtimes: such an equation is not read)
        if set(left) & set(string.ascii_lowercase) and set(left) & set(string.ascii_uppercase):
            return None
        counts: dict[str, int] = {}
        for letters in operands:
            for letter in letters:
                counts[letter] = counts.get(letter, 0) + 1
        out = [str(widest - 1 - i) for i in range(widest)]
        out += sorted(k for k, n in counts.items() if n == 1 and k in _LETTERS)
    return operands, out


class _Chain:
    """Ops through values of the node's own (``<output>::einsum<k>``); the last one writes the output."""

    def __init__(self, node: onnx.NodeProto) -> None:
        self.node = node
        self.specs: list[Spec] = []

    def step(
        self, kind: OpKind, inputs: tuple[str, ...], shape: tuple[int, ...], attrs_: dict[str, object] | None = None
    ) -> str:
        target = f"{self.node.output[0]}::einsum{len(self.specs)}"
        self.specs.append(Spec(kind, inputs, (target,), dict(attrs_ or {}), ((target, shape),)))  # type: ignore[arg-type]
        return target

    def permute(self, x: str, letters: list[str], order: list[str], sizes: dict[str, int]) -> str:
        if letters == order:
            return x
        perm = tuple(letters.index(letter) for letter in order)
        return self.step(OpKind.PERMUTE, (x,), tuple(sizes[c] for c in order), {"perm": perm})

    def finish(self, x: str) -> list[Spec]:
        """The last made value becomes the node's output (a copy when nothing was made)."""
        if not self.specs:
            return [Spec(OpKind.ELEMENTWISE, (x,), (self.node.output[0],))]
        last = self.specs[-1]
        self.specs[-1] = Spec(last.kind, last.inputs, (self.node.output[0],), last.attrs)
        return self.specs


def _why(node: onnx.NodeProto, why: str) -> list[Spec]:
    return [Spec(OpKind.OPAQUE, data(node), outs(node), {"why": why})]


def einsum(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    """``Einsum`` with one or two operands as a transpose or a matrix product (see the module)."""
    equation = attr(node, "equation", b"")
    equation = equation.decode() if isinstance(equation, bytes) else str(equation)
    inputs = data(node)
    if len(inputs) not in (1, 2):
        return _why(node, f"equation {equation!r}: {len(inputs)} operands")
    shapes = [ctx.shape(i) for i in inputs]
    parsed = parse(equation, [len(s) for s in shapes])
    if parsed is None:
        return _why(node, f"equation {equation!r} does not fit operands of ranks {[len(s) for s in shapes]}")
    operands, out = parsed
    sizes: dict[str, int] = {}
    for letters, shape in zip(operands, shapes):
        if len(set(letters)) != len(letters):
            return _why(node, f"equation {equation!r}: a letter repeated in one operand (a diagonal)")
        for letter, size in zip(letters, shape):
            if sizes.setdefault(letter, size) != size:
                return _why(node, f"equation {equation!r}: {letter!r} of sizes {sizes[letter]} and {size} (broadcast)")
    if len(set(out)) != len(out) or not set(out) <= set(sizes):
        return _why(node, f"equation {equation!r}: malformed output")
    declared = ctx.shapes.get(node.output[0])
    if declared is not None and declared != tuple(sizes[c] for c in out):
        return _why(
            node, f"equation {equation!r}: output of shape {declared}, not the {tuple(sizes[c] for c in out)} read"
        )
    chain = _Chain(node)
    if len(inputs) == 1:
        return _transpose(chain, inputs[0], operands[0], out, sizes)
    if inputs[0] in ctx.weights and inputs[1] not in ctx.weights:
        # the weight second: only the activation may be reshaped (the silenced original finds a
        # weight's input side through transposes, not through reshapes)
        inputs, operands = inputs[::-1], operands[::-1]
    return _product(chain, inputs, operands, out, sizes, equation)


def _transpose(chain: _Chain, x: str, letters: list[str], out: list[str], sizes: dict[str, int]) -> list[Spec]:
    summed = [c for c in letters if c not in out]
    if summed:
        dims = tuple(letters.index(c) for c in summed)
        letters = [c for c in letters if c in out]
        x = chain.step(OpKind.REDUCE, (x,), tuple(sizes[c] for c in letters), {"dims": dims, "keepdim": False})
    return chain.finish(chain.permute(x, letters, out, sizes))


def _product(
    chain: _Chain,
    inputs: tuple[str, ...],
    operands: list[list[str]],
    out: list[str],
    sizes: dict[str, int],
    equation: str,
) -> list[Spec]:
    node = chain.node
    a_letters, b_letters = operands
    in_a, in_b, in_out = set(a_letters), set(b_letters), set(out)
    contracted = [c for c in a_letters if c in in_b and c not in in_out]
    if (in_a | in_b) - in_out - set(contracted):
        return _why(node, f"equation {equation!r}: a letter summed in one operand only")
    if len(contracted) != 1:
        return _why(node, f"equation {equation!r}: {len(contracted)} contracted letters, not one")
    (k,) = contracted
    order = [c for c in out]
    batch = [c for c in order if c in in_a and c in in_b]
    free_a = [c for c in order if c in in_a and c not in in_b]
    free_b = [c for c in order if c in in_b and c not in in_a]
    # free letters beyond one per side go in front of the batch letters, where the product
    # broadcasts them: a's own, then b's, against size-1 dims of a; a side without a free letter
    # gets a size-1 one (reshapes, which only add size-1 dims)
    lead_a, lead_b = free_a[:-1], free_b[:-1]
    m, n = free_a[-1:], free_b[-1:]
    a = chain.permute(inputs[0], a_letters, [*lead_a, *batch, *m, k], sizes)
    b = chain.permute(inputs[1], b_letters, [*lead_b, *batch, k, *n], sizes)
    pad = (1,) * len(lead_b) if lead_a else ()
    if not m or pad:
        a_shape = (*(sizes[c] for c in lead_a), *pad, *(sizes[c] for c in batch), sizes[m[0]] if m else 1, sizes[k])
        a = chain.step(OpKind.RESHAPE, (a,), a_shape)
    if not n:
        b = chain.step(OpKind.RESHAPE, (b,), (*(sizes[c] for c in batch), sizes[k], 1))
    product = [*lead_a, *lead_b, *batch, *m, *n]
    shape = (*(sizes[c] for c in [*lead_a, *lead_b, *batch]), sizes[m[0]] if m else 1, sizes[n[0]] if n else 1)
    y = chain.step(OpKind.MATMUL, (a, b), shape)
    if not m or not n:
        y = chain.step(OpKind.RESHAPE, (y,), tuple(sizes[c] for c in product))
    return chain.finish(chain.permute(y, product, order, sizes))
