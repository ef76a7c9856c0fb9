"""One guarded pass through a model, recorded at PyTorch's dispatch level.

Every aten op that runs (functional ops inside ``forward`` included: ``torch.cat``,
``F.max_pool2d``, residual adds) is recorded with its arguments, its output shapes and the
innermost module call it ran in. Module calls are tracked with forward (pre-)hooks, so each
op can be attributed to the enclosing layer. Shapes, counting and the minimum-input solver
all read this one record.

The pass follows torchinfo's ``forward_pass``: set the mode, run under ``no_grad`` unless a
backward is asked for, and always remove hooks and restore the mode; on failure the error
names the innermost layer that was running.
"""

from __future__ import annotations

import gc
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from math import prod
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from archprobe.analysis.device_checks import check_op, conv_output_sides
from archprobe.analysis.geometry import Window, named_args, window
from archprobe.errors import ModelCodeError
from archprobe.probe import model_dtype
from archprobe.user_code import running_user_code

FORWARD, LOSS, BACKWARD = "forward", "loss", "backward"


@dataclass(frozen=True)
class TensorRef:
    """A tensor seen during the trace: its identity within the trace and its shape."""

    id: int
    shape: tuple[int, ...]
    dtype: torch.dtype

    def numel(self) -> int:
        return prod(self.shape)


@dataclass(frozen=True)
class OpEvent:
    index: int
    func: Any  # torch._ops.OpOverload
    args: tuple  # tensors replaced by TensorRef (lists of tensors by lists of TensorRef)
    kwargs: dict
    outputs: tuple  # TensorRef or None per output
    call: int  # index of the innermost ModuleCall running, -1 if none
    phase: str

    @property
    def name(self) -> str:
        return str(self.func.overloadpacket.__name__)

    @property
    def overload(self) -> str:
        return f"{self.func.overloadpacket.__name__}.{self.func._overloadname}"

    @cached_property
    def named(self) -> dict[str, Any]:
        """The arguments by schema name, defaults filled in (see :mod:`archprobe.analysis.geometry`)."""
        return named_args(self.func, self.args, self.kwargs)

    @property
    def window(self) -> Window | None:
        """Kernel, stride, padding and dilation of a convolution or pool; ``None`` for other ops."""
        weight = self.named.get("weight")
        return window(self.name, self.named, weight.shape if isinstance(weight, TensorRef) else None)


@dataclass
class ModuleCall:
    index: int
    path: str  # qualified name inside the model, "" for the root
    type_name: str
    depth: int
    parent: int
    own_params: int  # parameters owned directly, counted at the module's first call only
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)
    output_ids: list[int] = field(default_factory=list)  # the TensorRef ids of its output tensors


@dataclass
class Trace:
    ops: list[OpEvent]
    calls: list[ModuleCall]
    input: TensorRef
    params_used: int  # parameters read by some op in the forward phase
    used_param_ids: frozenset = frozenset()  # ids of those parameter tensors
    output: Any = None


class TraceFailure(Exception):
    """The pass raised; ``path``/``type_name`` name the innermost layer that was running."""

    def __init__(self, error: BaseException, path: str | None, type_name: str | None):
        where = f" in {path or '<root>'} ({type_name})" if type_name else ""
        super().__init__(f"{type(error).__name__}{where}: {_first_line(error)}")
        self.error = error
        self.path = path
        self.type_name = type_name


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _empty_like(x: torch.Tensor) -> torch.Tensor:
    # ``torch.empty_like`` on meta goes through a Python reference (~0.25 ms); for a contiguous
    # tensor ``empty_strided`` with its strides is the same tensor (~2 us).
    if x.is_contiguous():
        return torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device)
    return torch.empty_like(x)


def _batch_norm_fast(func, args, kwargs):
    x, weight = args[0], args[1]
    channels = x.shape[1] if x.dim() > 1 else 1
    if weight is not None and weight.numel() != channels:
        return NotImplemented  # let the real kernel raise its own error
    stats = x.new_empty((channels,))
    return (_empty_like(x), stats, x.new_empty((channels,)))


def _batch_norm_inference_fast(func, args, kwargs):
    # Under inference_mode ``batch_norm`` reaches the dispatch modes whole; on meta it then runs
    # its Python decomposition (~1 ms). Its one output is the input's shape.
    x, weight = args[0], args[1] if len(args) > 1 else kwargs.get("weight")
    channels = x.shape[1] if x.dim() > 1 else 1
    if weight is not None and weight.numel() != channels:
        return NotImplemented
    return _empty_like(x)


def _batch_norm_backward_fast(func, args, kwargs):
    x = args[1]
    mask = args[-1]
    channels = x.shape[1] if x.dim() > 1 else 1
    return (
        _empty_like(x) if mask[0] else None,
        x.new_empty((channels,)) if mask[1] else None,
        x.new_empty((channels,)) if mask[2] else None,
    )


def _cat_fast(func, args, kwargs):
    # The meta ``cat`` is a Python reference costing ~0.5 ms for DenseNet's long lists. Only the
    # plain case (same rank, dtype and contiguity, every other dimension equal) is answered
    # here; anything else, errors included, goes to the real kernel.
    tensors = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if kwargs.keys() - {"dim"}:
        return NotImplemented
    items = [t for t in tensors if not (t.dim() == 1 and t.shape[0] == 0)]
    if not items:
        return NotImplemented
    first = items[0]
    rank = first.dim()
    if rank == 0 or not -rank <= dim < rank:
        return NotImplemented
    d = dim + rank if dim < 0 else dim
    shape = list(first.shape)
    total = 0
    for t in items:
        if not t.is_meta or t.dim() != rank or t.dtype != first.dtype or not t.is_contiguous():
            return NotImplemented
        s = t.shape
        for i in range(rank):
            if i != d and s[i] != shape[i]:
                return NotImplemented
        total += s[d]
    shape[d] = total
    return first.new_empty(shape)


def _conv_fast(func, args, kwargs):
    # The meta convolution computes its shape in Python (~0.2 ms). Answer the plain case
    # (contiguous, channels consistent, every output side >= 1) directly, and a transposed
    # convolution's empty output, which the CPU runs and some meta kernels refuse; anything else,
    # errors included, goes to the real kernel.
    x, weight, _bias, stride, padding, dilation, transposed, output_padding, groups = args
    if kwargs or x.dim() != weight.dim() or x.dim() < 3 or not isinstance(padding, (list, tuple)):
        return NotImplemented
    named = {"input": x, "weight": weight, "stride": stride, "padding": padding, "dilation": dilation,
             "transposed": transposed, "output_padding": output_padding}
    sides = conv_output_sides(named)
    if transposed:
        if x.shape[1] != weight.shape[0] or min(sides) < 0 or (min(sides) > 0 and not x.is_contiguous()):
            return NotImplemented
        return x.new_empty((x.shape[0], weight.shape[1] * groups, *sides))
    if not x.is_contiguous() or x.shape[1] != weight.shape[1] * groups or min(sides) < 1:
        return NotImplemented
    return x.new_empty((x.shape[0], weight.shape[0], *sides))


def _outer_to_inner(t: torch.Tensor) -> bool:
    """Strides that shrink from the outermost dimension inwards (contiguous, or a slice of a
    contiguous tensor): an elementwise result of such tensors is contiguous."""
    strides = [st for st, n in zip(t.stride(), t.shape) if n > 1]
    return all(a >= b for a, b in zip(strides, strides[1:]))


def _elementwise_pair_fast(func, args, kwargs):
    # ``add`` and ``threshold_backward`` on meta are Python references (~0.3 ms); DenseNet's
    # backward sums thousands of gradient slices. Answer two tensors of one shape and dtype laid
    # out outer to inner (the result is a contiguous tensor of that shape); anything else goes
    # to the real kernel.
    a, b = args[0], args[1]
    if (kwargs.keys() - {"alpha"} or not isinstance(b, torch.Tensor) or not b.is_meta
            or a.shape != b.shape or a.dtype != b.dtype or not _outer_to_inner(a) or not _outer_to_inner(b)):
        return NotImplemented
    return a.new_empty(a.shape)


def _addmm_fast(func, args, kwargs):
    # The meta ``addmm`` is a Python reference (~0.4 ms); a transformer's linear layers call it
    # hundreds of times a pass. Answer two matrices that multiply and a bias that broadcasts to
    # their product, all of one dtype; anything else goes to the real kernel.
    bias, a, b = args
    if (kwargs.keys() - {"beta", "alpha"} or a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]
            or not (bias.is_meta and a.is_meta and b.is_meta) or not a.dtype == b.dtype == bias.dtype
            or bias.dim() > 2):
        return NotImplemented
    shape = (a.shape[0], b.shape[1])
    if any(n not in (1, m) for n, m in zip(reversed(bias.shape), reversed(shape))):
        return NotImplemented
    return a.new_empty(shape)


def _plain_layer_norm(x, normalized_shape, weight, bias) -> tuple[int, ...] | None:
    """The normalised shape if ``x`` (meta) ends in it and the parameters (meta, or None) have
    that shape and ``x``'s dtype: the case the fast layer-norm paths answer; else None."""
    ns = tuple(normalized_shape)
    if (not ns or not x.is_meta or x.dim() < len(ns) or tuple(x.shape[x.dim() - len(ns):]) != ns
            or any(p is not None and (not p.is_meta or tuple(p.shape) != ns or p.dtype != x.dtype)
                   for p in (weight, bias))):
        return None
    return ns


def _layer_norm_fast(func, args, kwargs):
    # The meta ``native_layer_norm`` is a Python reference (~1 ms). Answer an input whose last
    # dimensions are the normalised shape, with parameters of that shape and the input's dtype;
    # anything else goes to the real kernel. The statistics take the meta kernel's dtype.
    x, normalized_shape, weight, bias = args[:4]
    ns = _plain_layer_norm(x, normalized_shape, weight, bias)
    if kwargs or ns is None:
        return NotImplemented
    stats_shape = (*x.shape[:x.dim() - len(ns)], *(1,) * len(ns))
    stats_dtype = torch.float32 if x.dtype in _HALF else x.dtype
    return (torch.empty(x.shape, dtype=x.dtype, device=x.device),
            torch.empty(stats_shape, dtype=stats_dtype, device=x.device),
            torch.empty(stats_shape, dtype=stats_dtype, device=x.device))


def _layer_norm_backward_fast(func, args, kwargs):
    # The meta ``native_layer_norm_backward`` is a Python reference (~1.5 ms). Answer the case
    # the fast forward answers: the gradients of the input (contiguous) and of the parameters.
    grad_out, x, normalized_shape, _mean, _rstd, weight, bias, mask = args
    ns = _plain_layer_norm(x, normalized_shape, weight, bias)
    if kwargs or ns is None or grad_out.shape != x.shape or grad_out.dtype != x.dtype:
        return NotImplemented
    grad_weight = torch.empty(ns, dtype=x.dtype, device=x.device) if mask[1] and weight is not None else None
    grad_bias = torch.empty(ns, dtype=x.dtype, device=x.device) if mask[2] and bias is not None else None
    return (torch.empty(x.shape, dtype=x.dtype, device=x.device) if mask[0] else None, grad_weight, grad_bias)


def _contiguous_elementwise_fast(func, args, kwargs):
    # ``gelu`` and ``gelu_backward`` on meta are Python references (~0.5 and ~1 ms). Answer
    # contiguous tensors of one shape and dtype: the result is a contiguous tensor like them.
    first = args[0]
    if (kwargs.keys() - {"approximate"} or not all(isinstance(t, torch.Tensor) for t in args)
            or any(not t.is_meta or t.shape != first.shape or t.dtype != first.dtype or not t.is_contiguous()
                   for t in args)):
        return NotImplemented
    return torch.empty(first.shape, dtype=first.dtype, device=first.device)


# On the meta device some kernels are Python reference implementations costing milliseconds
# per call; where the output shapes are plainly the input's, produce them directly.
_FAST_META: dict[Any, Callable] = {
    torch.ops.aten.convolution.default: _conv_fast,
    torch.ops.aten.native_batch_norm.default: _batch_norm_fast,
    torch.ops.aten.native_batch_norm_backward.default: _batch_norm_backward_fast,
    torch.ops.aten.batch_norm.default: _batch_norm_inference_fast,
    torch.ops.aten.cat.default: _cat_fast,
    torch.ops.aten.add.Tensor: _elementwise_pair_fast,
    torch.ops.aten.threshold_backward.default: _elementwise_pair_fast,
    torch.ops.aten.addmm.default: _addmm_fast,
    torch.ops.aten.native_layer_norm.default: _layer_norm_fast,
    torch.ops.aten.native_layer_norm_backward.default: _layer_norm_backward_fast,
    torch.ops.aten.gelu.default: _contiguous_elementwise_fast,
    torch.ops.aten.gelu_backward.default: _contiguous_elementwise_fast,
}


# Where the meta kernels (which fake tensors run too) give an output another dtype than the CPU
# kernels do, for float16/bfloat16 input (checked against the CPU on torch 2.5 and 2.14): with
# float32 parameters (autocast's case) a normalisation keeps its statistics (mean, inverse
# deviation) in float32, with parameters of the input's dtype in that dtype, where meta gives
# one or the other whatever the parameters; a normalisation's backward gives each gradient the
# dtype of what it is the gradient of, where some meta kernels give the input's gradient float32
# (group norm) or the parameters' the input's dtype (layer norm on torch 2.5).
# The forward's first parameter; the backward's input, weight and bias (None: the weight's):
_NORM_PARAMS = {
    torch.ops.aten.native_batch_norm.default: 1,
    torch.ops.aten._native_batch_norm_legit.default: 1,
    torch.ops.aten._native_batch_norm_legit.no_stats: 1,
    torch.ops.aten._native_batch_norm_legit_no_training.default: 1,
    torch.ops.aten.native_group_norm.default: 1,
    torch.ops.aten.native_layer_norm.default: 2,
}
_NORM_BACKWARD = {
    torch.ops.aten.native_batch_norm_backward.default: (1, 2, None),
    torch.ops.aten.native_group_norm_backward.default: (1, 4, None),
    torch.ops.aten.native_layer_norm_backward.default: (1, 5, 6),
}
_HALF = (torch.float16, torch.bfloat16)


def _as_dtype(t, dtype):
    return t.new_empty(t.shape, dtype=dtype) if t is not None and dtype is not None and t.dtype != dtype else t


def _real_dtypes(func, args, out):
    first = _NORM_PARAMS.get(func)
    if first is not None and args[0].dtype in _HALF:
        params = [a for a in args[first:first + 4] if isinstance(a, torch.Tensor)]
        dtype = torch.float32 if any(p.dtype == torch.float32 for p in params) else args[0].dtype
        y, *stats = out
        return (y, *(_as_dtype(s, dtype) for s in stats))
    sources = _NORM_BACKWARD.get(func)
    if sources is not None and args[sources[0]].dtype in _HALF:
        x, weight, bias = (args[i] if i is not None else None for i in sources)
        bias = bias if isinstance(bias, torch.Tensor) else weight
        dtypes = [t.dtype if isinstance(t, torch.Tensor) else None for t in (x, weight, bias)]
        return tuple(_as_dtype(o, d) for o, d in zip(out, dtypes))
    return out


def _is_fake(t: torch.Tensor) -> bool:
    fake = sys.modules.get("torch._subclasses.fake_tensor")  # no fake tensor exists before it is imported
    return fake is not None and isinstance(t, fake.FakeTensor)


def run_op(func, args, kwargs):
    """Run ``func``, taking the fast path for meta tensors where one exists; on meta, refuse
    what the real kernels refuse (:mod:`archprobe.analysis.device_checks`); on meta and fake
    tensors, give outputs the dtypes the real kernels give them."""
    first = args[0] if args else None
    if isinstance(first, (list, tuple)) and first:  # cat: a list of tensors
        first = first[0]
    if not (isinstance(first, torch.Tensor) and first.is_meta):
        out = func(*args, **kwargs)
        return _real_dtypes(func, args, out) if isinstance(first, torch.Tensor) and _is_fake(first) else out
    fast = _FAST_META.get(func)
    out = fast(func, args, kwargs) if fast is not None else NotImplemented
    if out is NotImplemented:
        out = func(*args, **kwargs)
    check_op(func, args, kwargs, out)
    return _real_dtypes(func, args, out)


class _EagerMode(TorchDispatchMode):
    """A dispatch mode that never runs under torch.compile.

    By default PyTorch wraps ``__torch_dispatch__`` in ``torch._disable_dynamo``, which
    imports ``torch._dynamo`` (~1 s) on first use and adds a wrapper call per op; the
    documented opt-out is ``_should_skip_dynamo() -> False``.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False


class FastMeta(_EagerMode):
    """Only the fast meta paths, no recording: for plain passes that check validity."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return run_op(func, args, kwargs or {})


class _Recorder(_EagerMode):
    def __init__(self, stack: list[int], on_op: Callable[[OpEvent], None] | None):
        super().__init__()
        self.stack = stack
        self.ops: list[OpEvent] = []
        self.phase = FORWARD
        self.on_op = on_op
        self.refs: dict[int, TensorRef] = {}
        self.keepalive: list[torch.Tensor] = []  # ids must stay unique for the whole trace
        self.param_ids: set[int] = set()
        self.params_seen: set[int] = set()

    def ref(self, t: torch.Tensor) -> TensorRef:
        tid = id(t)
        r = self.refs.get(tid)
        if r is None or r.shape != tuple(t.shape):
            r = TensorRef(tid, tuple(t.shape), t.dtype)
            self.refs[tid] = r
            self.keepalive.append(t)
        return r

    def _refs(self, value):
        # Hand-rolled instead of pytree: aten arguments nest only in lists and tuples.
        if isinstance(value, torch.Tensor):
            if self.phase == FORWARD and id(value) in self.param_ids:
                self.params_seen.add(id(value))
            return self.ref(value)
        if isinstance(value, (list, tuple)):
            return type(value)(self._refs(v) for v in value)
        return value

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace == "prim":  # metadata queries (prim.device, on fake tensors): no work
            return func(*args, **kwargs)
        arg_refs = self._refs(args)
        kwarg_refs = {k: self._refs(v) for k, v in kwargs.items()}
        out = run_op(func, args, kwargs)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        out_refs = tuple(self.ref(o) if isinstance(o, torch.Tensor) else None for o in outs)
        event = OpEvent(
            index=len(self.ops),
            func=func,
            args=arg_refs,
            kwargs=kwarg_refs,
            outputs=out_refs,
            call=self.stack[-1] if self.stack else -1,
            phase=self.phase,
        )
        self.ops.append(event)
        if self.on_op is not None:
            self.on_op(event)
        return out


@contextmanager
def model_mode(model: nn.Module, train: bool):
    """Put every module in ``train``/eval mode for the block and restore each one's own mode.

    Calls ``model.train()`` only when some module differs (walking a DenseNet's 700 modules
    on every pass costs more than the pass's bookkeeping).
    """
    previous = [(m, m.training) for m in model.modules() if m.training != train]
    if previous:
        model.train(train)
    try:
        yield model
    finally:
        for module, mode in previous:
            module.training = mode


def forward_runs(model: nn.Module, shape: Sequence[int], *, train: bool = False) -> bool:
    """Does one forward pass at ``shape`` run (meta device, fast paths, no recording)?

    Raises ``ModelCodeError`` where the model's code calls ``sys.exit``: that ends the analysis
    rather than meaning "this size does not run"."""
    try:
        with model_mode(model, train), torch.no_grad(), FastMeta(), running_user_code(_forward_of(model)):
            model(make_input(shape, dtype=model_dtype(model)))
        return True
    except ModelCodeError:
        raise
    except Exception:  # noqa: BLE001 - any failure means this input does not run
        return False


def _forward_of(model: nn.Module) -> str:
    return f"forward of {type(model).__name__}"


def _shapes(value) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in tree_flatten(value)[0] if isinstance(t, torch.Tensor)]


def make_input(shape: Sequence[int], device: str | torch.device = "meta", dtype=torch.float32) -> torch.Tensor:
    return torch.empty(tuple(shape), device=device, dtype=dtype)


def trace(
    model: nn.Module,
    x: torch.Tensor,
    *,
    train: bool = False,
    backward: bool = False,
    track_modules: bool = True,
    on_op: Callable[[OpEvent], None] | None = None,
    autocast: Callable[[], Any] = nullcontext,
) -> Trace:
    """Run ``model(x)`` once under the recorder and return what ran.

    ``train`` selects training mode (BatchNorm uses batch statistics, aux heads run);
    ``backward`` also records a cross-entropy loss on synthetic labels and its backward.
    ``autocast``: a factory of the context the forward and the loss run in, as a training step's
    do (the backward runs outside it); autocast acts on tensors of a device, not on meta ones.
    Raises ``TraceFailure`` naming the innermost layer if the pass fails (``ModelCodeError``
    where the model's code calls ``sys.exit``).
    """
    stack: list[int] = []
    calls: list[ModuleCall] = []
    handles = []
    seen_modules: set[int] = set()
    names = {id(m): n for n, m in model.named_modules()}

    def pre_hook(module, _inputs):
        index = len(calls)
        first = id(module) not in seen_modules
        seen_modules.add(id(module))
        own = sum(p.numel() for p in module.parameters(recurse=False)) if first else 0
        calls.append(
            ModuleCall(
                index=index,
                path=names.get(id(module), "?"),
                type_name=type(module).__name__,
                depth=len(stack),
                parent=stack[-1] if stack else -1,
                own_params=own,
            )
        )
        stack.append(index)

    def post_hook(_module, _inputs, output):
        index = stack.pop()
        calls[index].output_shapes = _shapes(output)
        calls[index].output_ids = [id(t) for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor)]

    if track_modules:
        for module in model.modules():
            handles.append(module.register_forward_pre_hook(pre_hook))
            handles.append(module.register_forward_hook(post_hook))

    recorder = _Recorder(stack, on_op)
    recorder.param_ids = {id(p) for p in model.parameters()}
    grad = torch.enable_grad() if backward else torch.no_grad()
    output = None
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the trace keeps every tensor alive; collections only add pauses
    try:
        with model_mode(model, train), grad, recorder, running_user_code(_forward_of(model)):
            with autocast():
                try:
                    output = model(x)
                except Exception as exc:
                    failing = calls[stack[-1]] if stack else None
                    raise TraceFailure(
                        exc, failing.path if failing else None, failing.type_name if failing else None
                    ) from exc
                if backward:
                    recorder.phase = LOSS
                    loss = _synthetic_loss(output)
            if backward:
                recorder.phase = BACKWARD
                loss.backward()
    finally:
        for h in handles:
            h.remove()
        if gc_was_enabled:
            gc.enable()
    return Trace(
        ops=recorder.ops,
        calls=calls,
        input=recorder.refs.get(id(x), TensorRef(id(x), tuple(x.shape), x.dtype)),
        params_used=sum(p.numel() for p in model.parameters() if id(p) in recorder.params_seen),
        used_param_ids=frozenset(recorder.params_seen),
        output=output,
    )


def _synthetic_loss(output) -> torch.Tensor:
    """Cross-entropy on every (batch, classes) output (aux heads included), else a sum."""
    import torch.nn.functional as F

    tensors = [t for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor) and t.requires_grad]
    if not tensors:
        raise RuntimeError("the model output does not require grad; nothing to backpropagate")
    total = None
    for t in tensors:
        if t.dim() == 2:
            labels = torch.zeros(t.shape[0], dtype=torch.long, device=t.device)
            term = F.cross_entropy(t, labels)
        else:
            term = t.sum()
        total = term if total is None else total + term
    return total
