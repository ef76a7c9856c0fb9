"""Where the time goes: each layer's measured time in one step, forward and backward apart,
beside its MACs, FLOPs and bytes and the device's roofline (``archprobe profile``).

Methodology:

* The step is throughput's (:func:`archprobe.bench.throughput.build_workload`): eval is the
  forward under ``inference_mode``; train is zero_grad, forward, cross-entropy, backward and the
  SGD step. Warm-up and repeats follow :class:`~archprobe.bench.throughput.ThroughputConfig`
  (``run_timed``); each repeat is timed as throughput times one (host clock on CPU, CUDA events
  on a GPU) while ``torch.profiler`` records it, inside a ``record_function`` range per step.
* Attribution: every module's forward runs inside a ``record_function`` range pushed and popped
  by its pre/post hooks; the loss inside one more. A forward op belongs to the innermost range
  around it. A backward op belongs to the module whose forward created its autograd node: the
  engine's ``evaluate_function`` event carries the node's sequence number, and the forward op
  that created the node carries the same one. ``Optimizer.zero_grad``/``Optimizer.step`` (torch's
  own ranges) are the ``(optimizer)`` row; what ran in the step outside all of them is
  ``(unattributed)``. Times: on CPU the self-time of every event (ops and ranges: Python inside a
  module's forward is the module's), so the events of one step tile it; on CUDA the kernel time
  each op launched, and the step time no kernel covers is ``(device idle)``.
* Rows show the median over repeats; ``share`` = row median / median step. The rows add up to
  the step within 5% or the result says ``unaccounted``. The profiled step is compared with
  throughput's median for the same setup: the same workload's plain step (no hooks, no
  profiler), timed as throughput times it, in rounds that alternate with the profiled ones so
  the machine's drift hits both alike; a difference above 10% is ``profiler_cost``.
* Costs come from :func:`archprobe.analysis.layer_costs.layer_costs` (meta device, the counter
  of ``archprobe params``). Roofline: the matmul-class ceiling (:mod:`archprobe.bench.ceiling`)
  and the copy bandwidth (:mod:`archprobe.bench.bandwidth`), each measured once per device in a
  child process; ``attainable = min(ceiling, bandwidth x intensity)``. A row above it is a bug
  in a count, a time or a ceiling and is flagged ``above_roof``, never clamped.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from archprobe.bench.bandwidth import measure_bandwidth
from archprobe.bench.ceiling import measure_ceiling
from archprobe.bench.throughput import ERROR_LIMIT, OPTIMIZER, ThroughputConfig, ThroughputRunner, build_workload
from archprobe.errors import ModelCodeError, UsageError, first_line
from archprobe.probe import Mode
from archprobe.results import Bandwidth, Ceiling, ProfileResult, ProfileRow
from archprobe.runtime.backends import is_oom
from archprobe.runtime.load import load_between, machine_warnings, sample
from archprobe.runtime.precision import compute_dtype
from archprobe.runtime.timing import Clock, run_counted, run_timed, summarize
from archprobe.user_code import running_user_code

if TYPE_CHECKING:  # pragma: no cover
    from archprobe.zoo.spec import ModelSpec

STEP_RANGE = "archprobe.step"
MODULE_RANGE = "archprobe.module:"
LOSS_RANGE = "archprobe.loss"
BACKWARD_NODE = "autograd::engine::evaluate_function: "
OPTIMIZER_RANGES = ("Optimizer.zero_grad#", "Optimizer.step#")
LOSS, OPTIMIZER_ROW, UNATTRIBUTED, IDLE = "(loss)", "(optimizer)", "(unattributed)", "(device idle)"
FORWARD, BACKWARD, STEP, NO_PHASE = "forward", "backward", "step", "-"
SUM_TOLERANCE = 0.05  # the rows must add up to the step within this
OVERHEAD_TOLERANCE = 0.10  # the profiled step within this of throughput's
ROUNDS = 4  # plain and profiled steps alternate in at least this many rounds
ROOF_TOLERANCE = 1.0  # above the roofline by any amount is flagged (no slack)


# --------------------------------------------------------------------------------------------
# Attribution: profiler events -> (owner, phase) -> seconds per step
# --------------------------------------------------------------------------------------------
@dataclass
class Event:
    """One profiler event, reduced to what attribution needs (times in microseconds)."""

    name: str
    start: float
    end: float
    thread: int = 0
    parent: int | None = None  # index of the enclosing event on the same thread
    seq: int = -1  # autograd sequence number (-1: none)
    self_cpu: float = 0.0
    self_device: float = 0.0  # kernel time of the kernels this op launched itself


def events_of(function_events) -> list[Event]:
    """``torch.profiler``'s CPU-side ``FunctionEvent`` list as :class:`Event` records."""
    cpu = [e for e in function_events if str(getattr(e, "device_type", "CPU")).endswith("CPU")]
    index = {id(e): i for i, e in enumerate(cpu)}
    out = []
    for e in cpu:
        parent = e.cpu_parent
        out.append(Event(
            name=e.name, start=e.time_range.start, end=e.time_range.end, thread=e.thread,
            parent=index.get(id(parent)) if parent is not None else None,
            seq=e.sequence_nr if e.sequence_nr is not None else -1,
            self_cpu=float(e.self_cpu_time_total), self_device=float(getattr(e, "self_device_time_total", 0.0) or 0.0),
        ))
    return out


def _marker(event: Event) -> tuple[str, str] | None:
    """What an event says about ownership: ("module", path), ("loss", ""), ("optimizer", ""),
    ("backward", "") or ("step", "")."""
    name = event.name
    if name.startswith(MODULE_RANGE):
        return "module", name[len(MODULE_RANGE):]
    if name == LOSS_RANGE:
        return "loss", ""
    if name.startswith(OPTIMIZER_RANGES):
        return "optimizer", ""
    if name.startswith(BACKWARD_NODE):
        return "backward", ""
    if name == STEP_RANGE:
        return "step", ""
    return None


def attribute(events: Sequence[Event], *, device_time: bool = False,
              fold: Callable[[str], str] = lambda path: path) -> list[dict[tuple[str, str], float]]:
    """Per step (each ``archprobe.step`` range, in order): seconds per (owner, phase).

    ``device_time``: count each op's own kernel time (CUDA) instead of its CPU self-time.
    ``fold`` maps a module path to the row it belongs to (the chosen depth).
    """
    steps = sorted((e for e in events if e.name == STEP_RANGE), key=lambda e: e.start)
    if steps:  # the steps run on one thread (a GPU's copy of the annotation, if any, is not a step)
        steps = [s for s in steps if s.thread == steps[0].thread]
    starts = [s.start for s in steps]
    order = sorted(range(len(events)), key=lambda i: events[i].start)

    def nearest(i: int) -> tuple[int, tuple[str, str]] | None:
        """The nearest marker at or above event ``i`` (its index and what it says)."""
        j: int | None = i
        while j is not None:
            mark = _marker(events[j])
            if mark is not None:
                return j, mark
            j = events[j].parent
        return None

    # forward ops: sequence number -> the layer whose forward created that autograd node
    seq_owner: dict[int, str] = {}
    for i in order:
        e = events[i]
        if e.seq < 0:
            continue
        found = nearest(i)
        if found is None:
            continue
        kind, path = found[1]
        if kind == "module":
            seq_owner.setdefault(e.seq, fold(path))
        elif kind == "loss":
            seq_owner.setdefault(e.seq, LOSS)

    per_step: list[dict[tuple[str, str], float]] = [{} for _ in steps]
    for i in order:
        e = events[i]
        at = bisect.bisect_right(starts, e.start) - 1
        if at < 0 or e.start > steps[at].end:
            continue  # outside every profiled step (warm-up, the profiler's own)
        seconds = (e.self_device if device_time else e.self_cpu) / 1e6
        if seconds <= 0:
            continue
        found = nearest(i)
        key: tuple[str, str]
        if found is None or found[1][0] == "step":
            key = (UNATTRIBUTED, NO_PHASE)
        else:
            j, (kind, path) = found
            if kind == "module":
                key = (fold(path), FORWARD)
            elif kind == "loss":
                key = (LOSS, FORWARD)
            elif kind == "optimizer":
                key = (OPTIMIZER_ROW, STEP)
            else:  # a backward node: the layer that made it
                owner = seq_owner.get(events[j].seq)
                key = (owner, BACKWARD) if owner is not None else (UNATTRIBUTED, NO_PHASE)
        per_step[at][key] = per_step[at].get(key, 0.0) + seconds
    return per_step


# --------------------------------------------------------------------------------------------
# Ranges around modules and the loss
# --------------------------------------------------------------------------------------------
class LayerRanges:
    """``record_function`` ranges around every module's forward (pre/post hooks) and the loss."""

    def __init__(self, model, train_step=None):
        self.model = model
        self.train_step = train_step
        self.handles: list = []
        self.stack: list = []
        self._loss_fn = None

    def __enter__(self):
        from torch.autograd.profiler import record_function

        names = {id(m): n for n, m in self.model.named_modules()}
        stack = self.stack

        def pre(module, _inputs):
            rf = record_function(MODULE_RANGE + names.get(id(module), "?"))
            rf.__enter__()
            stack.append(rf)

        def post(_module, _inputs, _output):
            if stack:
                stack.pop().__exit__(None, None, None)

        for module in self.model.modules():
            self.handles.append(module.register_forward_pre_hook(pre))
            self.handles.append(module.register_forward_hook(post))
        if self.train_step is not None:
            loss_fn = self._loss_fn = self.train_step.loss_fn

            def ranged_loss(out, targets):
                with record_function(LOSS_RANGE):
                    return loss_fn(out, targets)

            self.train_step.loss_fn = ranged_loss
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        while self.stack:  # a forward that raised left its ranges open
            self.stack.pop().__exit__(None, None, None)
        if self.train_step is not None and self._loss_fn is not None:
            self.train_step.loss_fn = self._loss_fn
        return False


@contextlib.contextmanager
def torch_profiler(kind: str):
    """``torch.profiler.profile`` for the device (CPU ops; CUDA kernels too on a GPU), without
    the line kineto writes to stderr at each start and stop (:mod:`archprobe.plumbing.stderr`)."""
    import os

    from torch.profiler import ProfilerActivity, profile

    from archprobe.plumbing.stderr import dropping_lines

    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # kineto's own log lines (warnings, errors) off stderr
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if kind == "cuda" else [])
    with dropping_lines(b"USDT:"), profile(activities=activities) as prof:
        yield prof


# --------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------
def fold_path(path: str, depth: int | None) -> str:
    from archprobe.analysis.layer_costs import fold

    return fold(path, depth)


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def _quantile(values: Sequence[float], q: float) -> float | None:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


class ProfileRunner(ThroughputRunner):
    """Profiles one model at a time; shares backends, ceilings and bandwidths across a run.

    ``profiler_factory(kind)`` gives the profiler context (its ``events()`` the
    ``FunctionEvent`` list); tests pass fakes for the CUDA path.
    """

    def __init__(self, *, clock: Clock = time.perf_counter, backend_factory: Callable[[str], Any] | None = None,
                 ceiling_fn: Callable[[str, str, int | None], Ceiling] = measure_ceiling,
                 bandwidth_fn: Callable[[str, int | None], Bandwidth] = measure_bandwidth,
                 profiler_factory: Callable[[str], Any] = torch_profiler,
                 costs_fn: Callable[..., Any] | None = None):
        super().__init__(clock=clock, backend_factory=backend_factory, ceiling_fn=ceiling_fn,
                         macs_fn=lambda probe: None)
        self._bandwidth_fn = bandwidth_fn
        self._profiler_factory = profiler_factory
        self._costs_fn = costs_fn
        self.bandwidths: dict[tuple, Bandwidth | None] = {}

    def bandwidth(self, device: str, threads: int | None) -> Bandwidth | None:
        """The copy bandwidth of (device, threads), measured on first use (any dtype)."""
        key = (device, threads)
        if key not in self.bandwidths:
            try:
                self.bandwidths[key] = self._bandwidth_fn(device, threads)
            except Exception:  # noqa: BLE001 - the roofline is optional; the times stand
                self.bandwidths[key] = None
        return self.bandwidths[key]

    def costs(self, spec: "ModelSpec", config: ThroughputConfig, depth: int | None, kind: str):
        from archprobe.analysis.layer_costs import layer_costs

        probe = self.meta_probe(spec).with_setting(batch_size=config.batch_size, mode=config.mode)
        if self._costs_fn is not None:
            return self._costs_fn(probe, depth=depth, foreach=kind == "cuda", dtype=config.dtype)
        return layer_costs(probe, depth=depth, optimizer=OPTIMIZER, foreach=kind == "cuda", dtype=config.dtype)

    def profile(self, spec: "ModelSpec", device: str, config: ThroughputConfig,
                depth: int | None = None) -> ProfileResult:
        """One model's profile; a failing model gives an ``oom`` or ``error`` result."""
        meta = self.meta_probe(spec)
        spec = meta.spec
        dtype = compute_dtype(config.dtype, meta.dtype)
        backend = self.backend(device)
        head: dict[str, Any] = dict(
            model=spec.name, device=device, mode=config.mode.value, batch_size=config.batch_size, dtype=dtype,
            depth=depth, input_shape=tuple(spec.input_shape), notes=meta.notes,
            optimizer=OPTIMIZER if config.mode is Mode.TRAIN else None,
            timing="cuda_kernels" if backend.kind == "cuda" else "cpu_self",
        )
        try:
            costs = self.costs(spec, config, depth, backend.kind)
        except ModelCodeError:
            raise
        except Exception as exc:  # noqa: BLE001 - the result records the failure
            return ProfileResult(status="error", error=first_line(exc, limit=ERROR_LIMIT), **head)
        head.update(asdict(self.environment(device)))
        with backend.settings(threads=config.threads, cudnn_benchmark=config.cudnn_benchmark) as applied:
            head.update(applied)
            ceiling = self.ceiling(device, dtype, applied["threads"])
            bandwidth = self.bandwidth(device, applied["threads"])
            before = sample()
            status, error, timed = "ok", None, None
            try:
                with running_user_code(f"profiling {spec.name}"):
                    timed = self._profiled(spec, backend, config, depth)
            except ModelCodeError:
                raise
            except Exception as exc:  # noqa: BLE001
                status = "oom" if is_oom(exc) else "error"
                error = first_line(exc, limit=ERROR_LIMIT)
            load = load_between(before, sample())
            backend.cleanup()
        head.update(other_cpu_cores=load.other_cores, process_cpu_cores=load.process_cores,
                    cpu_steal=load.steal_share, load_average=load.load_average)
        if status != "ok":
            return ProfileResult(status=status, error=error, **head)
        times, plain, warm, per_step = timed
        return assemble(head, times, warm, per_step, costs, ceiling, bandwidth,
                        throughput_step_s=summarize(plain).median_s, depth=depth, device_time=backend.kind == "cuda")

    def _profiled(self, spec: "ModelSpec", backend, config: ThroughputConfig, depth: int | None):
        """Warm up, then rounds of plain steps (throughput's) and profiled steps, interleaved so
        the machine's drift hits both alike, until the profiled ones reach ``min_iters`` and
        ``min_time``. Returns (profiled times, plain times, warm-up count, per-step attribution)."""
        from torch.autograd.profiler import record_function

        work = build_workload(spec, backend.device, config)
        timer = backend.timer()

        def ranged():
            with record_function(STEP_RANGE):
                work.step()

        fold = lambda path: fold_path(path, depth)  # noqa: E731
        profiled: list[float] = []
        plain: list[float] = []
        per_step: list[dict] = []
        with work.context():
            _, warm = run_timed(work.step, timer, warmup=config.warmup, warmup_time=config.warmup_time,
                                min_iters=1, min_time=0.0, max_iters=config.max_iters, clock=self.clock)
            per_round = max(1, math.ceil(config.min_iters / ROUNDS))
            while True:
                plain += run_counted(work.step, timer, per_round)
                with LayerRanges(work.model, work.train_step):
                    ranged()  # the hooks' first call
                    with self._profiler_factory(backend.kind) as prof:
                        ranged()  # the profiler's first step, not counted
                        times = run_counted(ranged, timer, per_round)
                steps = attribute(events_of(prof.events()), device_time=backend.kind == "cuda", fold=fold)
                profiled += times
                per_step += steps[-len(times):]
                if len(profiled) >= config.max_iters or (len(profiled) >= config.min_iters
                                                         and sum(profiled) >= config.min_time):
                    break
        return profiled, plain, warm + 1, per_step


def assemble(head: dict, times: Sequence[float], warm: int, per_step: Sequence[dict], costs, ceiling: Ceiling | None,
             bandwidth: Bandwidth | None, *, throughput_step_s: float | None, depth: int | None,
             device_time: bool) -> ProfileResult:
    """The result from per-step times, per-step attribution and the layer costs."""
    stats = summarize(times)
    step_s = stats.median_s
    per_step = [dict(s) for s in per_step]
    if device_time:  # the step time no kernel covered
        for s, t in zip(per_step, times):
            s[(IDLE, NO_PHASE)] = max(0.0, t - sum(s.values()))
    row_costs = _row_costs(costs)
    keys = _row_order(row_costs, per_step)
    ridge = ceiling.flops_per_sec / bandwidth.bytes_per_sec if ceiling and bandwidth else None
    rows = []
    above = []
    for owner, phase in keys:
        values = [s.get((owner, phase), 0.0) for s in per_step]
        t = _median(values)
        cost = row_costs.get((owner, phase))
        flops = cost.flops if cost is not None else None
        nbytes = cost.bytes if cost is not None else None
        achieved = flops / t if flops and t > 0 else None
        moved = nbytes / t if nbytes and t > 0 else None
        intensity = flops / nbytes if flops and nbytes else None
        attainable = bound = None
        if intensity is not None and ceiling is not None and bandwidth is not None:
            memory_roof = bandwidth.bytes_per_sec * intensity
            attainable = min(ceiling.flops_per_sec, memory_roof)
            bound = "memory" if memory_roof < ceiling.flops_per_sec else "compute"
        if achieved is not None and attainable is not None and achieved > attainable * ROOF_TOLERANCE:
            above.append(f"{owner or '(model)'} {phase}")
        rows.append(ProfileRow(
            model=head["model"], layer=owner, phase=phase, time_s=t, share=t / step_s if step_s > 0 else 0.0,
            type=costs.types.get(owner, "") if costs is not None else "",
            depth=0 if owner.startswith("(") or not owner else len(owner.split(".")),
            macs=cost.macs if cost is not None else None, flops=flops, bytes=nbytes,
            achieved_flops_per_sec=achieved, achieved_bytes_per_sec=moved, intensity=intensity,
            attainable_flops_per_sec=attainable, bound=bound, p10_s=_quantile(values, 10), p90_s=_quantile(values, 90),
            device=head["device"], mode=head["mode"], batch_size=head["batch_size"],
        ))
    attributed = sum(r.time_s for r in rows)
    owned = sum(r.time_s for r in rows if r.layer not in (UNATTRIBUTED, IDLE))
    overhead = step_s / throughput_step_s - 1 if throughput_step_s else None
    codes = list(machine_warnings(spread=stats.spread, other_cores=head.get("other_cpu_cores"),
                                  steal=head.get("cpu_steal")))
    if overhead is not None and abs(overhead) > OVERHEAD_TOLERANCE:
        codes.append("profiler_cost")
    if step_s > 0 and abs(attributed / step_s - 1) > SUM_TOLERANCE:
        codes.append("unaccounted")
    if above:
        codes.append("above_roof")
    for prefix, roof in (("ceiling_", ceiling), ("bandwidth_", bandwidth)):  # how steady each roof's measurement was
        if roof is not None:
            codes.extend(prefix + code for code in machine_warnings(spread=roof.spread, other_cores=roof.other_cpu_cores,
                                                                    steal=roof.cpu_steal))
    result = dict(head)
    result.update(
        status="ok", rows=tuple(rows), step_s=step_s, step_p10_s=stats.p10_s, step_p90_s=stats.p90_s,
        spread=stats.spread, repeats=stats.samples, warmup_iters=warm, attributed_s=attributed,
        coverage=owned / step_s if step_s > 0 else None, throughput_step_s=throughput_step_s,
        profiler_overhead=overhead,
        macs=sum(c.macs for c in costs.costs.values()) if costs is not None else None,
        flops=sum(c.flops for c in costs.costs.values()) if costs is not None else None,
        ceiling_flops_per_sec=ceiling.flops_per_sec if ceiling else None,
        ceiling_shape=ceiling.shape if ceiling else None, ceiling_precision=ceiling.precision if ceiling else None,
        bandwidth_bytes_per_sec=bandwidth.bytes_per_sec if bandwidth else None,
        bandwidth_shape=bandwidth.shape if bandwidth else None,
        large_bandwidth_bytes_per_sec=bandwidth.large_bytes_per_sec if bandwidth else None,
        large_bandwidth_shape=bandwidth.large_shape if bandwidth else None, ridge_intensity=ridge,
        above_roof_layers=tuple(above), unsupported_ops=costs.unsupported if costs is not None else (),
        warnings=tuple(codes),
    )
    return ProfileResult(**result)


def _row_costs(costs) -> dict:
    """The layer costs keyed as rows are: what no layer owns, in any phase, is one row."""
    from archprobe.analysis.layer_costs import Cost

    merged: dict[tuple[str, str], Any] = {}
    for (owner, phase), cost in (costs.costs.items() if costs is not None else ()):
        key = (UNATTRIBUTED, NO_PHASE) if owner == UNATTRIBUTED else (owner, phase)
        entry = merged.setdefault(key, Cost())
        entry.add(cost.macs, cost.flops, cost.bytes)
    return merged


def _row_order(row_costs: dict, per_step: Sequence[dict]) -> list[tuple[str, str]]:
    """The order ops ran in: forward rows in call order, the loss, backward rows as they ran,
    the optimizer step (the cost trace's order), then rows only the profiler saw, then what no
    layer owns."""
    last = [(UNATTRIBUTED, NO_PHASE), (IDLE, NO_PHASE)]
    order = [k for k in row_costs if k not in last]
    timed = [k for s in per_step for k in s if k not in last]
    order += [k for k in dict.fromkeys(timed) if k not in row_costs]
    present = set(row_costs) | {k for s in per_step for k in s}
    return [k for k in order + last if k in present]


def top_rows(result: ProfileResult, k: int | None) -> tuple[ProfileRow, ...]:
    """The ``k`` rows with the most time, largest first, and one row for the rest (``(N other
    rows)``, its time and share the sum of theirs) so the shares still add up; all rows with
    ``k`` None."""
    if k is None or k >= len(result.rows):
        return result.rows
    ranked = sorted(result.rows, key=lambda r: r.time_s, reverse=True)
    kept, rest = ranked[:k], ranked[k:]
    other = ProfileRow(model=result.model, layer=f"({len(rest)} other rows)", phase=NO_PHASE,
                       time_s=sum(r.time_s for r in rest), share=sum(r.share for r in rest),
                       device=result.device, mode=result.mode, batch_size=result.batch_size)
    return tuple(kept) + (other,)


def profile_sweep(specs: Sequence["ModelSpec"], device: str, config: ThroughputConfig, *, depth: int | None = None,
                  runner: ProfileRunner | None = None,
                  on_start: Callable[[str], None] | None = None) -> Iterable[ProfileResult]:
    """One profile per model, yielded as each is measured."""
    runner = runner or ProfileRunner()
    for spec in specs:
        if on_start is not None:
            on_start(f"{spec.name} {device} {config.mode.value} b={config.batch_size}")
        yield runner.profile(spec, device, config, depth)


def check_depth(depth: int | None) -> int | None:
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
        raise UsageError(f"must be a non-negative integer, not {depth!r}", param="depth")
    return depth

