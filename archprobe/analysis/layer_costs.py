"""Per-layer cost of one pass, forward and backward apart, on the meta device: what ``profile``
sets beside each layer's measured time.

For every module (by its qualified name) and phase this counts, from the same dispatch trace and
cost table as ``archprobe params`` (:mod:`archprobe.analysis.costs`):

* ``macs``: multiply-accumulates of convolution, linear and matmul ops;
* ``flops``: 2 per MAC plus the floating-point work of every other op (FLOPs = 2 x MACs for
  matmul-class ops);
* ``bytes``: what each op reads (its tensor arguments, weights included) and writes (its
  outputs), summed over the layer's ops. Views (``view``, ``t``, ``expand``, ``detach`` ...)
  and allocations (``empty``) move nothing. Caches are not modelled: this is the traffic of
  eager execution, each op from and to memory.

Forward ops belong to the innermost module running them. Backward ops belong to the module
whose forward created their autograd node: each forward op is recorded with the autograd
sequence number current when it ran, and the node a backward op runs in
(``torch._C._current_autograd_node()``) carries the sequence number it was created with. The
loss (cross-entropy) and its backward are the ``(loss)`` owner; ops of no module (the backward's
gradient seed, ``AccumulateGrad``) are ``(unattributed)``. The optimizer step (SGD with momentum,
the throughput engine's) is traced on meta parameters in its steady state (momentum buffers
present) as ``(optimizer)``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from archprobe.probe import Probe

FORWARD, BACKWARD, STEP = "forward", "backward", "step"
LOSS_OWNER, OPTIMIZER_OWNER, UNATTRIBUTED = "(loss)", "(optimizer)", "(unattributed)"
# Ops that move no data: views and aliases of their input, and allocations that write nothing.
_NO_TRAFFIC = frozenset(
    "view _unsafe_view reshape _reshape_alias alias as_strided expand t transpose permute squeeze unsqueeze "
    "detach select slice split split_with_sizes unbind narrow flatten unflatten empty empty_like empty_strided "
    "new_empty new_empty_strided lift_fresh resolve_conj resolve_neg _to_copy_noop".split())


@dataclass
class Cost:
    """MACs, FLOPs and bytes of one owner in one phase."""

    macs: int = 0
    flops: int = 0
    bytes: int = 0
    unsupported: dict = field(default_factory=dict)

    def add(self, macs: int, flops: int, nbytes: int) -> None:
        self.macs += macs
        self.flops += flops
        self.bytes += nbytes


@dataclass(frozen=True)
class LayerCosts:
    """``costs[(owner, phase)]``; owner is a module path ("" the model) or a pseudo-owner;
    ``types`` names each module path's type; ``unsupported`` ops without a cost formula."""

    costs: dict
    types: dict
    unsupported: tuple[str, ...]


def op_bytes(op) -> int:
    """Bytes an op reads and writes: its tensor arguments and outputs (views move none)."""
    from archprobe.analysis.trace import TensorRef

    if op.name in _NO_TRAFFIC or getattr(op.func, "is_view", False):
        return 0

    def size(ref) -> int:
        return ref.numel() * ref.dtype.itemsize

    total = 0
    stack = list(op.args) + list(op.kwargs.values())
    while stack:
        item = stack.pop()
        if isinstance(item, TensorRef):
            total += size(item)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return total + sum(size(o) for o in op.outputs if isinstance(o, TensorRef))


def fold(path: str, depth: int | None) -> str:
    """``path`` cut to ``depth`` components (``"inception.3.b1"`` at depth 2 is ``"inception.3"``)."""
    if depth is None or not path or path.startswith("("):
        return path
    return ".".join(path.split(".")[:depth]) if depth > 0 else ""


def layer_costs(probe: "Probe", *, depth: int | None = None, optimizer: str = "sgd",
                foreach: bool = False, dtype: str = "float32") -> LayerCosts:
    """MACs, FLOPs and bytes per (module path folded to ``depth``, phase) of one pass of the
    probe's model (on meta): an eval forward, or in training mode the training step (forward,
    loss, backward, optimizer step; ``foreach``: its multi-tensor kernels, torch's default on
    CUDA).

    ``dtype`` ``"bfloat16"``/``"float16"``: the forward and the loss run under autocast, as the
    measured step's do, so the bytes are those of the casts and of the cast operands. Autocast
    acts only on tensors of a device, so that pass runs on a fake CPU twin (no memory, no
    values; CPU autocast's op lists, which may differ from CUDA's for a few ops). Attention takes
    the math path there, as on meta, so every dtype counts the same work.
    """
    import contextlib

    import torch

    from archprobe.analysis.costs import op_cost
    from archprobe.analysis.guarded import explain_failure
    from archprobe.analysis.trace import BACKWARD as TRACE_BACKWARD
    from archprobe.analysis.trace import LOSS, TraceFailure, trace
    from archprobe.runtime.precision import AUTOCAST_DTYPES, autocast

    train = probe.train
    forward_seqs: list[int] = []  # the sequence number current at each forward/loss op, in order
    forward_owner: list[int] = []  # that op's module call (-1 none), or -2 for the loss
    backward_seq: dict[int, int] = {}  # backward op index -> its autograd node's sequence number

    def on_op(event):
        if event.phase == TRACE_BACKWARD:
            node = torch._C._current_autograd_node()
            backward_seq[event.index] = node._sequence_nr() if node is not None else -1
        elif train:
            forward_seqs.append(torch._C._autograd._get_sequence_nr())
            forward_owner.append(-2 if event.phase == LOSS else event.call)

    model, x = probe.model, probe.input()
    tensors, cast = contextlib.nullcontext, contextlib.nullcontext
    if dtype in AUTOCAST_DTYPES:
        model, x, tensors = _fake_pass(probe)
        cast = autocast(torch.device("cpu"), dtype)
    try:
        with tensors():
            t = trace(model, x, train=train, backward=train, on_op=on_op, autocast=cast)
    except TraceFailure as failure:
        raise explain_failure(probe, failure) from failure

    paths = [fold(c.path, depth) for c in t.calls]
    types: dict[str, str] = {}
    for c, path in zip(t.calls, paths):  # pre-order: the module at the folded path comes first
        types.setdefault(path, c.type_name)
    costs: dict[tuple[str, str], Cost] = {}
    for path in paths:  # every layer has a forward row, in call order, even one without ops of its own
        costs.setdefault((path, FORWARD), Cost())
    unsupported: dict[str, None] = {}

    def owner_of_call(call: int) -> str:
        if call == -2:
            return LOSS_OWNER
        return paths[call] if call >= 0 else UNATTRIBUTED

    for op in t.ops:
        if op.phase == TRACE_BACKWARD:
            seq = backward_seq.get(op.index, -1)
            # the node with sequence number s was made just before the first forward op that saw s + 1
            at = bisect.bisect_left(forward_seqs, seq + 1) if seq >= 0 else len(forward_seqs)
            owner = owner_of_call(forward_owner[at]) if at < len(forward_seqs) else UNATTRIBUTED
            phase = BACKWARD
        else:
            owner = LOSS_OWNER if op.phase == LOSS else owner_of_call(op.call)
            phase = FORWARD
        _account(costs, owner, phase, op, op_cost(op), unsupported)
    if train:
        for op in _optimizer_ops(probe, optimizer, foreach):
            _account(costs, OPTIMIZER_OWNER, STEP, op, op_cost(op), unsupported)
    return LayerCosts(costs, types, tuple(unsupported))


def _fake_pass(probe: "Probe"):
    """The probe's model and input as fake CPU tensors, and a factory of the context a pass over
    them runs in (the fake mode, attention on the math path)."""
    import contextlib

    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from archprobe.errors import ArchprobeError
    from archprobe.zoo.twin import fake_twin

    fake_mode = FakeTensorMode()
    try:
        model = fake_twin(probe.model, fake_mode, "cpu")
    except TypeError as exc:
        raise ArchprobeError(f"{probe.name}: {exc}") from exc
    with fake_mode:
        x = torch.empty(tuple(probe.input().shape), dtype=probe.input().dtype, device="cpu")

    @contextlib.contextmanager
    def tensors():
        with sdpa_kernel([SDPBackend.MATH]), fake_mode:
            yield

    return model, x, tensors


def _account(costs, owner, phase, op, cost, unsupported) -> None:
    if op.name.startswith("_record_function"):  # the optimizer's own profiler range
        return
    entry = costs.setdefault((owner, phase), Cost())
    if cost is None:
        unsupported[op.overload] = None
        entry.unsupported[op.overload] = None
        entry.add(0, 0, op_bytes(op))
    else:
        entry.add(cost[0], cost[1], op_bytes(op))


def _optimizer_ops(probe: "Probe", optimizer: str, foreach: bool) -> list:
    """The ops of one steady-state optimizer step over the (meta) model's trainable parameters."""
    import torch

    from archprobe.analysis.trace import _Recorder
    from archprobe.runtime.step import make_optimizer

    params = [p for p in probe.model.parameters() if p.requires_grad]
    if not params:
        return []
    opt = make_optimizer(optimizer, params, foreach=foreach)
    try:
        for p in params:
            p.grad = torch.empty_like(p)
        opt.step()  # the first step makes the momentum buffers
        recorder = _Recorder([], None)
        with recorder:
            opt.step()
        return recorder.ops
    finally:
        for p in params:
            p.grad = None
