"""Recording aten calls into a GraphBuilder: the dispatch mode a trace runs the model under.

Each call is answered by the fast meta kernels (``prune_torch._meta``), kept in the stream a light
re-run is checked against with its plain numbers (``prune_torch._constants``), and recorded as an
op of the graph through its reader (``prune_torch._aten``), or handed over whole by a stock layer
(``layer_call``, from ``prune_torch._leaves``). Scaled dot-product attention is recorded as one
op by a torch-function mode (:class:`WholeOps`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from prune_graph import GraphBuilder, OpKind, ValueId, ValueKind
from prune_torch._aten import OpSpec, tensors_in
from prune_torch._aten_table import READERS
from prune_torch._constants import Constant, constants_of, reads_data
from prune_torch._lines import current_model_line
from prune_torch._meta import MetaKernels

__all__ = ["Recorder", "WholeOps", "dtype_name"]


_NO_KEYWORDS: dict[str, Any] = {}  # a layer's calls take none (see Recorder.layer_call); never written


_DTYPE_NAMES: dict[torch.dtype, str] = {}
# looked up once: an enum member is a slow class attribute, and a trace makes a value per call
_ACTIVATION, _CONSTANT = ValueKind.ACTIVATION, ValueKind.CONSTANT


def dtype_name(t: torch.Tensor) -> str:
    dtype = t.dtype
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return name


@functools.cache
def _op_info(func: Any) -> tuple[Any, str, bool]:
    """An aten overload's reader, its name in the graph, and whether it writes its first argument.

    Looked up once per overload: a schema's arguments are rebuilt on every access, and a trace
    asks for each op's.
    """
    arguments = func._schema.arguments
    alias = arguments[0].alias_info if arguments else None
    packet = func.overloadpacket
    return READERS.get(packet), str(packet).replace("aten::", "aten."), alias is not None and alias.is_write


def _all_in(ids: set[int], args: Any, kwargs: Any) -> bool:
    """Whether the call reads at least one tensor and every tensor it reads is in ``ids``.

    Stops at the first tensor that is not: most calls read a model value first.
    """
    found = False
    for tree in (args, kwargs):
        for item in tree.values() if isinstance(tree, Mapping) else tree:
            if isinstance(item, torch.Tensor):
                if id(item) not in ids:
                    return False
                found = True
            elif isinstance(item, (list, tuple, dict)):
                # a list of tensors (a concatenation's) looked at as it is; nested ones flattened first
                flat = (
                    item if type(item) is not dict and all(type(t) is torch.Tensor for t in item) else tensors_in(item)
                )
                for t in flat:
                    if id(t) not in ids:
                        return False
                    found = True
    return found


class Recorder(TorchDispatchMode):
    """Records aten calls into a GraphBuilder."""

    def __init__(self, builder: GraphBuilder, names: dict[int, ValueId], modules: list[str]) -> None:
        super().__init__()
        self.builder = builder
        self.names = names
        self.modules = modules
        self.keep: list[torch.Tensor] = []
        self.count = 0
        # outputs a reader leaves out (a norm's mean and rstd): not model values
        self.dropped: set[int] = set()
        # answers calls on meta tensors without torch's slow Python meta kernels where it can
        self.kernels = MetaKernels()
        # every aten call in order with its result, recorded or not: what a light re-run is checked against
        self.stream: list[tuple[Any, Any]] = []
        # the plain numbers of those calls (see prune_torch._constants), and whether data reached Python yet
        self.constants: list[Constant] = []
        self.data_read = False
        self.lines = False  # name the model's line for each number (a re-trace that looks for a change)

    def _id_of(self, t: torch.Tensor) -> ValueId:
        name = self.names.get(id(t))
        if name is None:
            name = self.builder.value(
                f"const{len(self.keep)}", tuple(t.shape), dtype_name(t), _CONSTANT, self.modules[-1]
            )
            self.names[id(t)] = name
            self.keep.append(t)
        return name

    def _new(self, t: torch.Tensor) -> ValueId:
        self.count += 1
        name = self.builder.value(f"%{self.count}", tuple(t.shape), dtype_name(t), _ACTIVATION, self.modules[-1])
        self.names[id(t)] = name
        self.keep.append(t)
        return name

    paused = False  # while a whole call is recorded as one op (see WholeOps), its parts are not

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = self.kernels.run(func, args, kwargs)
        self._note(func, args, kwargs, out)
        if not self.paused:
            self._record(func, args, kwargs, out)
        return out

    def layer_call(
        self, func: Any, args: tuple[Any, ...], out: Any, kind: OpKind, inputs: tuple[torch.Tensor, ...], attrs: Any
    ) -> None:
        """A stock layer's call whose result ``out`` the layer made and whose reading it knows (``prune_torch._leaves``).

        Noted and recorded as :meth:`__torch_dispatch__` records the same call: the op reads ``inputs``
        and keeps the first tensor of ``out``; the others (a norm's statistics) are left out.
        """
        self._note(func, args, _NO_KEYWORDS, out)
        if self.paused:
            return
        names = self.names
        ids = []
        for t in inputs:
            name = names.get(id(t))
            ids.append(name if name is not None else self._id_of(t))
        if type(out) is tuple:
            first = out[0]
            for t in out[1:]:  # a norm's statistics (what _drop does, for a tuple of tensors)
                if id(t) not in names:
                    self.dropped.add(id(t))
                    self.keep.append(t)  # once per call, shared or not: ``keep``'s length numbers constants
        else:
            first = out
        # what _new does, written out: a layer's call makes one value
        self.count += 1
        owner = self.modules[-1]
        output = self.builder.value(f"%{self.count}", tuple(first.shape), dtype_name(first), _ACTIVATION, owner)
        names[id(first)] = output
        self.keep.append(first)
        self.builder.op(kind, _op_info(func)[1], ids, (output,), owner, attrs)

    def _note(self, func: Any, args: Any, kwargs: Any, out: Any) -> None:
        """Every call in the stream, with its plain numbers (see prune_torch._constants)."""
        self.stream.append((func, out))
        values = constants_of(func, args, kwargs)
        if values:
            line = current_model_line() if self.lines else None
            self.constants.append(Constant(len(self.stream) - 1, self.modules[-1], func, values, self.data_read, line))
        elif not self.data_read and reads_data(func):
            self.data_read = True

    def _drop(self, out: Any) -> None:
        for t in tensors_in(out):
            if id(t) not in self.names:
                self.dropped.add(id(t))
                self.keep.append(t)

    def _record(self, func: Any, args: Any, kwargs: Any, out: Any) -> None:
        if self.dropped and _all_in(self.dropped, args, kwargs):
            # autograd's detach of saved statistics: recorded, it would fix their size (groups, heads)
            self._drop(out)
            return
        reader, target, writes_first = _op_info(func)
        spec: OpSpec | None = None
        if reader is not None:
            try:
                spec = reader(args, kwargs, out)
            except (IndexError, TypeError, ValueError):
                spec = None
        if spec is not None and writes_first and self._writes_into_view(func, args, spec):
            spec = None
        if spec is None:
            spec = OpSpec(
                OpKind.OPAQUE, tuple(tensors_in(list(args)) + tensors_in(dict(kwargs))), tuple(tensors_in(out))
            )
        inputs = [self._id_of(t) for t in spec.inputs]
        outputs = []
        seen_out: set[int] = set()
        for t in spec.outputs:
            if id(t) in seen_out:
                continue
            seen_out.add(id(t))
            outputs.append(self._new(t))
        self._drop(out)
        if not outputs:
            return
        self.builder.op(spec.kind, target, inputs, outputs, self.modules[-1], dict(spec.attrs))

    def seal(self, name: str, inputs: list[torch.Tensor]) -> None:
        """Record an opaque use of ``inputs`` by a module whose widths are fixed in its code."""
        ids = [self._id_of(t) for t in inputs]
        if ids:
            self.builder.op(OpKind.OPAQUE, f"nn.{name}", ids, [], self.modules[-1])

    @staticmethod
    def _writes_into_view(func: Any, args: Any, spec: OpSpec) -> bool:
        """An in-place op that writes another tensor's channels into a view of a larger tensor."""
        if not _op_info(func)[2]:  # its first argument is not written
            return False
        target = args[0] if args else None
        others = [t for t in spec.inputs if t is not target]
        return isinstance(target, torch.Tensor) and target._is_view() and bool(others)


class WholeOps(TorchFunctionMode):
    """Records scaled dot-product attention as one op, whatever kernel or decomposition runs it.

    On the meta device torch decomposes it into matmuls, a softmax and a multiplication by
    1/√(head dim) given as a plain number, which no coupling rule can see; as one ATTENTION op
    the graph knows that the default scale depends on the query-key dim.
    """

    _ATTENTION = (torch._C._nn.scaled_dot_product_attention,)

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func not in self._ATTENTION or self.recorder.paused or len(args) < 3:
            return func(*args, **kwargs)
        q, k = args[0], args[1]
        if kwargs.get("enable_gqa") or q.shape[:-2] != k.shape[:-2]:
            return func(*args, **kwargs)  # grouped-query form: its parts are recorded (expand, matmul)
        self.recorder.paused = True
        try:
            out = func(*args, **kwargs)
        finally:
            self.recorder.paused = False
        self.recorder._record(torch.ops.aten.scaled_dot_product_attention.default, args, kwargs, out)
        return out
