"""The exact set of input sizes a model accepts, back-solved from its layer arithmetic.

"Valid" means the forward pass runs. The answer is a set, not a number: a fixed ``Linear``
after ``Flatten`` bounds it above (LeNet, the d2l AlexNet and VGG take only an interval) and
branches that must agree (add, cat) can leave holes.

Method (``method="analytic"``):

1. Trace the model at its default size and at a second valid size whose height and width
   moved by different amounts (dispatch level, so ``F.max_pool2d`` and
   ``F.avg_pool2d(x, x.size()[2:])`` inside ``forward`` are seen). Where an argument equals a
   dimension that did not change between the traces (a global window over a map that is 1 high
   at both sizes), a third trace at a size where it does change settles it.
2. Align the traces op by op and replay the arithmetic of every op (convolutions, pools with
   ``ceil_mode``, adaptive pools, reductions, views, ``cat``/``add`` agreement, the ``Linear``
   after ``Flatten``, BatchNorm's "more than 1 value per channel" in training) over all
   candidate sizes at once (:mod:`archprobe.analysis.replay`). Candidates: square sides
   1..max_size, heights 1..max_size at the anchor width, widths 1..max_size at the anchor height.
3. Verify with real forward passes on the meta device at the boundaries (the minimum runs and
   one less does not, each interval's ends, the minimum height and width).

Where the forward cannot be replayed (control flow or arguments that depend on the size in a
way the replay cannot follow) or verification disagrees, the answer comes from forward passes
over square sides 1..min(max_size, 512) instead (``method="scan"``), and the result says so.

Limits: the traces show one path through ``forward``. Control flow on the input size that takes
the same path at every traced size (``if x.shape[-1] < 8: ...``) is invisible to the analysis;
verification at the boundaries catches it where it changes the answer there, and then the
answer comes from the scan.

Definitions:
  * ``valid``: the square sides ``s`` for which an ``s x s`` input runs, as intervals
    ``[lo, hi]``, ``hi = None`` where the set runs on to ``max_size`` (the cap);
  * ``anchor``: the model's default ``(H, W)`` if it runs, else the smallest valid square;
  * ``min_height`` / ``min_width``: the smallest valid height at the anchor width and the
    smallest valid width at the anchor height (``valid_h``/``valid_w`` hold the sets). Where H and
    W are coupled (LeNet's ``Linear`` fixes ``h_out * w_out``; BatchNorm in training needs
    ``batch x h x w > 1``), the two minima together may not run;
  * ``min_size = (H, W)``: the smallest valid input by area (then by its longer side), which
    itself runs: every ``H x W`` below the area of the smallest valid square is replayed (in
    training, BatchNorm at batch 1 fails at 1x1 and takes 1x33 where 33x33 is the smallest
    square). A scan compares only that square and the per-dimension minima together, and says so.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from archprobe.errors import InputSizeError, ModelCodeError, UsageError
from archprobe.results import Check, LayerSize, MinInputResult, Note

if TYPE_CHECKING:  # pragma: no cover
    from archprobe.analysis.trace import Trace, TraceFailure
    from archprobe.probe import Mode, Probe
    from archprobe.zoo.spec import ModelSpec

DEFAULT_MAX_SIZE = 4096
MAX_MAX_SIZE = 65536
_AREA_CHUNK = 65536  # candidates per replay in the smallest-area search
SCAN_LIMIT = 512  # the fallback scan covers square sides 1..min(max_size, SCAN_LIMIT)
MAX_CHECKS = 12  # verification passes at most

# Second-trace offsets (dH, dW), tried in order: large and odd first, so that every derived
# dimension differs between the traces; small ones for models that take only an interval.
_OFFSETS = (
    (37, 75), (32, 64), (16, 32), (8, 16), (4, 8), (2, 4), (1, 2), (3, 5),
    (-1, -2), (-2, -4), (-4, -8), (-8, -16), (-16, -32), (-32, -64), (64, 128), (128, 256),
)
_SINGLE_OFFSETS = (1, -1, 2, -2, 3, -3, 4, -4)
# Square sides of common datasets and models, tried when the default size does not run.
_COMMON_SIDES = (32, 28, 224, 64, 96, 227, 299, 256, 128, 384, 512)


# --- public API ---------------------------------------------------------------------------------


def solve_min_input(
    probe: "Probe",
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    explain: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> MinInputResult:
    """The exact set of spatial sizes the probe's model accepts in its mode and batch size (see
    the module docstring); the probe's own size is the default (anchor) size.

    ``progress(done, total)`` is called during a fallback scan.
    """
    result, _, _ = _solve(probe, max_size, explain, progress, query=None)
    return result


def describe_valid_sizes(result: MinInputResult) -> str:
    """One line for error messages, e.g. ``valid square sides: 63–4096+ (min HxW 63x63)``."""
    scanned = f" (scanned 1–{result.scan_limit})" if result.scan_limit is not None else ""
    if not result.valid:
        return f"no square side from 1 to {result.examined_to} runs{scanned}"
    text = f"valid square sides{scanned}: {valid_text(result.valid, result.examined_to)}"
    if result.min_size:
        text += f" (min HxW {result.min_size[0]}x{result.min_size[1]}"
        if result.anchor and (result.min_height, result.min_width) != tuple(result.min_size):
            # per-dimension minima are each taken at the other dimension's anchor: say so, so that
            # "min height 1" next to "squares from 33" does not read as a contradiction
            anchor_h, anchor_w = result.anchor
            text += (f"; min height {result.min_height} at width {anchor_w},"
                     f" min width {result.min_width} at height {anchor_h}")
        text += ")"
    return text


def check_input_size(probe: "Probe") -> None:
    """Raise :class:`InputSizeError` if the probe's input size is not one its model takes.

    The message names the layer where the size runs out and the valid sizes, e.g.
    ``alexnet cannot take 3x32x32: features.12 (MaxPool2d) output would be 0x0; valid square
    sides: 63–4096+ (min HxW 63x63)``. Returns ``None`` when the size is valid, and when no
    size the solver tries runs either: a failure is then not the input size's fault (a different
    size would not fix it) but the model's.
    """
    channels, height, width = probe.input_shape
    result, answer, solver = _solve(probe, DEFAULT_MAX_SIZE, False, None, query=(height, width), allow_scan=False)
    ok, layer, reason = answer
    if ok or (result is None and solver.reference_size is None):
        return None
    sep = " " if result is not None and result.method == "analytic" else ": "  # raw errors after a colon
    where = f"{layer}{sep}{reason}" if layer and reason else (layer or reason or "the forward pass fails")
    mode = " in training mode" if probe.train else ""
    message = f"{probe.name} cannot take {channels}x{height}x{width}{mode}: {where}"
    if result is None:  # the analysis could not follow the model; an error path does not scan
        raise InputSizeError(message, hint="scan", hint_values={"model": probe.name})
    raise InputSizeError(f"{message}; {describe_valid_sizes(result)}")


def ensure_input_size(probe: "Probe") -> None:
    """Cheap when the probe's input size runs (one pass on meta); otherwise raise the
    :func:`check_input_size` error naming the layer and the valid sizes where other sizes run
    (a model that runs at no size is left to fail where it is run)."""
    from archprobe.analysis.trace import forward_runs

    if not forward_runs(probe.model, probe.shape, train=probe.train):
        check_input_size(probe)


def check_sizes(specs: Sequence["ModelSpec"], modes: Sequence["Mode"], batch_size: int,
                build: "Callable[[ModelSpec], Probe] | None" = None) -> None:
    """Raise the one-line ``InputSizeError`` (with the valid sizes) for a size a model cannot
    take, before anything is measured. ``build`` gives a spec's meta probe (a runner's cache)."""
    from archprobe.probe import Probe

    for spec in specs:
        meta = build(spec) if build is not None else Probe.build(spec)
        for mode in modes:
            ensure_input_size(meta.with_setting(batch_size=batch_size, mode=mode))


# --- the solver ---------------------------------------------------------------------------------


# What kernels raise about sizes (a shape mismatch, an empty output, too few values for a
# BatchNorm): another size may run. Anything else comes from the model's own code.
SIZE_ERRORS = (RuntimeError, ValueError)


class _Fallback(Exception):
    """The analytic method cannot answer; the message says why."""


def _solve(probe: "Probe", max_size, explain, progress, query, allow_scan=True):
    if not 1 <= max_size <= MAX_MAX_SIZE:
        raise UsageError(f"must be between 1 and {MAX_MAX_SIZE}, not {max_size}", param="max_size")
    solver = _Solver(probe, max_size, query)
    try:
        result = solver.analytic()
    except _Fallback as why:
        if not allow_scan:
            solver.query_answer = solver.query_by_pass()
            return None, solver.query_answer, solver
        result = solver.scan(str(why), progress)
        if not result.valid:
            solver.raise_if_the_model_fails_everywhere()
    if explain:
        result = solver.explain(result)
    return result, solver.query_answer, solver


class _Solver:
    def __init__(self, probe: "Probe", max_size: int, query):
        self.probe = probe
        self.model = probe.model
        self.train = probe.train
        self.batch = probe.batch_size
        self.channels = probe.input_shape[0]
        self.default = (int(probe.input_shape[1]), int(probe.input_shape[2]))
        self.max_size = max_size
        self.query = query  # the (H, W) check_input_size asks about, if any
        self.query_answer: tuple[bool, str | None, str | None] = (True, None, None)
        self.notes: list[Note] = list(probe.notes)
        self.pair: tuple | None = None  # (min H, min W, runs) where H and W couple
        self.reference_size: tuple[int, int] | None = None  # a size found to run, if any

    # forward passes
    def shape(self, h: int, w: int) -> tuple[int, int, int, int]:
        return self.probe.at_size(h, w).shape

    def runs(self, h: int, w: int) -> bool:
        from archprobe.analysis.trace import forward_runs

        return forward_runs(self.model, self.shape(h, w), train=self.train)

    def trace(self, h: int, w: int, modules: bool = True):
        """A trace at ``h x w`` or ``None`` if the pass fails; ``modules=False`` for traces that
        serve only the alignment (layer names come from the reference trace)."""
        from archprobe.analysis.trace import TraceFailure, make_input, trace

        try:
            return trace(self.model, make_input(self.shape(h, w), dtype=self.probe.dtype), train=self.train, track_modules=modules)
        except TraceFailure:
            return None

    def _failed_pass(self, h: int, w: int) -> "TraceFailure | None":
        """The ``TraceFailure`` of a pass at ``h x w``, or None if it runs."""
        from archprobe.analysis.trace import TraceFailure, make_input, trace

        try:
            trace(self.model, make_input(self.shape(h, w), dtype=self.probe.dtype), train=self.train)
        except TraceFailure as exc:
            return exc
        return None

    def failure(self, h: int, w: int) -> tuple[str | None, str | None]:
        """Layer and first error line of a failing pass (for scans and probes)."""
        exc = self._failed_pass(h, w)
        if exc is None:
            return None, None
        layer = f"{exc.path or '(model)'} ({exc.type_name})" if exc.type_name else None
        text = str(exc.error).strip().splitlines()
        return layer, (text[0] if text else type(exc.error).__name__)

    def raise_if_the_model_fails_everywhere(self) -> None:
        """No size runs: where the pass at the default size fails in the model's own code (an
        exception no kernel raises about shapes), no size would help, and the model has a bug."""
        exc = self._failed_pass(*self.default)
        if exc is not None and not isinstance(exc.error, SIZE_ERRORS):
            shape = "x".join(map(str, self.shape(*self.default)))
            raise ModelCodeError(f"{self.probe.name} fails at every size (first at {shape}): {exc}")

    def query_by_pass(self) -> tuple[bool, str | None, str | None]:
        if self.runs(*self.query):
            return (True, None, None)
        layer, reason = self.failure(*self.query)
        return (False, layer, reason)

    # the analytic method
    def analytic(self) -> MinInputResult:
        from archprobe.analysis.replay import Program, Unsupported

        ref, ref_size = self._reference()
        traces = [ref, *self._second(ref_size)]
        cap = self.max_size
        anchor = ref_size if ref_size == self.default else None
        res = None
        program = None
        for round_ in range(3):
            try:
                program = Program(traces)
                hs, ws = self._candidates(anchor or ref_size)
                res = program.replay(hs, ws)
            except Unsupported as exc:
                raise _Fallback(f"the analysis cannot follow this model: {exc}") from exc
            if anchor is None:
                squares = np.flatnonzero(res.valid[:cap])
                anchor = (int(squares[0]) + 1,) * 2 if len(squares) else ref_size
                hs, ws = self._candidates(anchor)
                try:
                    res = program.replay(hs, ws)
                except Unsupported as exc:
                    raise _Fallback(f"the analysis cannot follow this model: {exc}") from exc
            if not res.ambiguities or round_ == 2:
                break
            extra = self._disambiguate(res, hs, ws, traces)
            if extra is None:
                self.notes.append(Note.of("arguments_unsettled"))
                break
            traces.append(extra)
        assert res is not None and program is not None

        valid = res.valid
        sq, hl, wl = valid[:cap], valid[cap: 2 * cap], valid[2 * cap: 3 * cap]
        intervals = _intervals(sq)
        valid_h, valid_w = _intervals(hl), _intervals(wl)
        min_square = intervals[0][0] if intervals else None
        min_h = valid_h[0][0] if valid_h else None
        min_w = valid_w[0][0] if valid_w else None
        self.pair = None
        if min_h and min_w and (min_h, min_w) != (min_square, min_square):
            try:
                pair_runs = bool(program.replay([min_h], [min_w]).valid[0])
            except Unsupported as exc:
                raise _Fallback(f"the analysis cannot follow this model: {exc}") from exc
            self.pair = (min_h, min_w, pair_runs)
            if not pair_runs:
                self.notes.append(Note.of("coupled", min_height=min_h, min_width=min_w, anchor_height=anchor[0],
                                          anchor_width=anchor[1]))

        # why the sizes just outside run out (the limiting layers)
        def why(i: int):
            op_index = int(res.first_bad[i])
            layer = _layer_name(ref, op_index) if op_index >= 0 else None
            return bool(res.valid[i]), layer, res.reason(i)

        lower = (min_square - 1) if min_square and min_square > 1 else None
        if lower is None and not intervals:
            lower = cap
        upper = intervals[0][1] + 1 if intervals and intervals[0][1] < cap else None
        limiting = why(lower - 1) if lower is not None else None
        upper_why = why(upper - 1) if upper is not None else None
        if self.query is not None:
            self.query_answer = why(3 * cap)

        min_size = _smallest_input(min_h, min_w, self.pair, min_square)
        if min_size is not None:
            try:
                min_size = _smallest_area(program, min_size, cap)
            except Unsupported as exc:
                raise _Fallback(f"the analysis cannot follow this model: {exc}") from exc
        result = MinInputResult(
            model=self.probe.name,
            mode=self.probe.mode.value,
            batch_size=self.batch,
            min_size=min_size,
            min_square=min_square,
            limiting_layer=limiting[1] if limiting else None,
            method="analytic",
            verified=False,
            in_channels=self.channels,
            valid=_open_ended(intervals, cap),
            valid_h=_open_ended(valid_h, cap),
            valid_w=_open_ended(valid_w, cap),
            anchor=tuple(anchor),
            min_height=min_h,
            min_width=min_w,
            max_size=cap,
            capped=bool(intervals and intervals[-1][1] == cap),
            limiting_reason=limiting[2] if limiting else None,
            upper_limiting_layer=upper_why[1] if upper_why else None,
            upper_limiting_reason=upper_why[2] if upper_why else None,
            notes=tuple(self.notes),
        )
        checks = self._verify(result, intervals)
        ok = all(c.agrees for c in checks)
        if not ok:
            bad = [c for c in checks if not c.agrees]
            text = ", ".join(
                f"{c.height}x{c.width} {'runs' if c.ran else 'fails'} (analysis: {'runs' if c.expected else 'fails'})"
                for c in bad
            )
            raise _Fallback(f"verification by forward passes disagreed with the analysis: {text}")
        traced = tuple(tuple(int(v) for v in t.input.shape[2:]) for t in traces)
        return replace(result, verified=True, checks=tuple(checks), traced=traced)

    def _reference(self):
        """A trace at the default size, else at the first size that runs among multiples of the
        default (5/4, 3/2, 2, 3, 4, 1/2, 1/4), common dataset sizes, then squares 1, 2, 3, 4, 6, 9..."""
        h0, w0 = self.default
        side = max(h0, w0)
        sizes = [self.default]
        for num, den in ((5, 4), (3, 2), (2, 1), (3, 1), (4, 1), (1, 2), (1, 4)):
            sizes.append((side * num // den,) * 2)
        sizes += [(s, s) for s in _COMMON_SIDES]
        s = 1
        while s <= self.max_size:
            sizes.append((s, s))
            s = s + 1 if s < 4 else s * 3 // 2 if s % 2 == 0 else s * 4 // 3
        tried = []
        for size in sizes:
            if size in tried or min(size) < 1 or max(size) > self.max_size:
                continue
            tried.append(size)
            # a plain pass first (cheaper than a trace, and most of these fail)
            if (size == self.default or self.runs(*size)) and (t := self.trace(*size)) is not None:
                if size != self.default:
                    self.notes.append(Note.of("default_size_fails", height=h0, width=w0, analysed_height=size[0],
                                              analysed_width=size[1]))
                self.reference_size = size
                return t, size
        shown = ", ".join(f"{h}x{w}" for h, w in tried[:8]) + (", ..." if len(tried) > 8 else "")
        raise _Fallback(f"no reference size runs (tried {len(tried)} sizes: {shown})")

    def _second(self, ref_size) -> list:
        """Traces at other valid sizes: one where H and W moved by different amounts, else (for
        models that take only a narrow range) one moving only H and one moving only W."""
        h0, w0 = ref_size
        limit = 2 * self.max_size
        for dh, dw in _OFFSETS:
            h, w = h0 + dh, w0 + dw
            if 1 <= h <= limit and 1 <= w <= limit:
                t = self.trace(h, w, modules=False)
                if t is not None:
                    return [t]
        found = []
        for axis in (0, 1):
            for step in _SINGLE_OFFSETS:
                size = (h0 + step, w0) if axis == 0 else (h0, w0 + step)
                if min(size) < 1:
                    continue
                t = self.trace(*size, modules=False)
                if t is not None:
                    found.append(t)
                    break
        if found:
            return found
        raise _Fallback(f"no second size near {h0}x{w0} runs, so size-dependent arguments cannot be found")

    def _candidates(self, anchor) -> tuple[np.ndarray, np.ndarray]:
        """Square sides 1..cap, heights 1..cap at the anchor width, widths 1..cap at the anchor
        height, then the queried size (``check_input_size``) if any."""
        cap = self.max_size
        sides = np.arange(1, cap + 1, dtype=np.int64)
        extra_h = [self.query[0]] if self.query is not None else []
        extra_w = [self.query[1]] if self.query is not None else []
        hs = np.concatenate([sides, sides, np.full(cap, anchor[0], dtype=np.int64), np.array(extra_h, np.int64)])
        ws = np.concatenate([sides, np.full(cap, anchor[1], dtype=np.int64), sides, np.array(extra_w, np.int64)])
        return hs, ws

    def _disambiguate(self, res, hs, ws, traces):
        """Trace at a size where the ambiguous dimensions take new values: among the candidates
        that reach the ambiguous op (valid ones first), the one settling the most ambiguities."""
        n = len(res.valid)
        score = np.zeros(n, dtype=np.int64)
        for amb in res.ambiguities:
            reach = (res.first_bad == -1) | (res.first_bad >= amb.op)
            score += reach & ~np.isin(amb.array[:n], amb.values)
        score = 2 * score + res.valid
        score[score < 2] = 0
        seen = {tuple(t.input.shape[2:]) for t in traces}
        tries = 0
        for i in np.argsort(-score, kind="stable"):
            if score[i] <= 0 or tries >= 4:
                return None
            size = (int(hs[i]), int(ws[i]))
            if size in seen:
                continue
            seen.add(size)
            tries += 1
            t = self.trace(*size, modules=False)
            if t is not None:
                return t
        return None

    def _verify(self, result: MinInputResult, intervals: list) -> list[Check]:
        cap = self.max_size
        points: list[tuple[int, int, bool]] = []

        def add(h, w, expected):
            if 1 <= h and 1 <= w and (h, w, expected) not in points:
                points.append((h, w, expected))

        s = result.min_square
        if s:
            add(s, s, True)
            add(s - 1, s - 1, False)
        anchor_h, anchor_w = result.anchor
        if result.min_size:
            add(*result.min_size, True)
        if result.min_height and result.min_width:
            mh, mw = result.min_height, result.min_width
            add(mh, anchor_w, True)
            add(mh - 1, anchor_w, False)
            add(anchor_h, mw, True)
            add(anchor_h, mw - 1, False)
        chosen = intervals[:2] + ([intervals[-1]] if len(intervals) > 2 else [])
        for lo, hi in chosen:
            add(lo, lo, True)
            add(lo - 1, lo - 1, False)
            if hi < cap:
                add(hi, hi, True)
                add(hi + 1, hi + 1, False)
        if not intervals:
            add(min(cap, max(self.default)), min(cap, max(self.default)), False)
        if self.pair is not None:
            add(*self.pair)
        checks = []
        for h, w, expected in points[:MAX_CHECKS]:
            checks.append(Check(h, w, expected, self.runs(h, w)))
        return checks

    # the fallback
    def scan(self, why: str, progress) -> MinInputResult:
        limit = min(self.max_size, SCAN_LIMIT)
        ok = np.zeros(limit, dtype=bool)
        for s in range(1, limit + 1):
            ok[s - 1] = self.runs(s, s)
            if progress is not None:
                progress(s, limit)
        intervals = _intervals(ok)
        min_square = intervals[0][0] if intervals else None
        anchor = self.default if self.runs(*self.default) else ((min_square,) * 2 if min_square else None)
        min_h = min_w = None
        if anchor is not None:
            min_h = next((h for h in range(1, limit + 1) if self.runs(h, anchor[1])), None)
            min_w = next((w for w in range(1, limit + 1) if self.runs(anchor[0], w)), None)
        pair = (min_h, min_w, self.runs(min_h, min_w)) if min_h and min_w else None
        limiting = upper = (None, None)
        if min_square and min_square > 1:
            limiting = self.failure(min_square - 1, min_square - 1)
        elif not intervals:
            limiting = self.failure(limit, limit)
        if intervals and intervals[0][1] < limit:
            upper = self.failure(intervals[0][1] + 1, intervals[0][1] + 1)
        if self.query is not None:
            self.query_answer = self.query_by_pass()
        notes = [*self.notes, Note.of("scanned", limit=limit, reason=why)]
        return MinInputResult(
            model=self.probe.name,
            mode=self.probe.mode.value,
            batch_size=self.batch,
            min_size=_smallest_input(min_h, min_w, pair, min_square),
            min_square=min_square,
            limiting_layer=limiting[0],
            method="scan",
            verified=True,
            in_channels=self.channels,
            valid=_open_ended(intervals, limit),
            valid_h=None,
            valid_w=None,
            anchor=tuple(anchor) if anchor else None,
            min_height=min_h,
            min_width=min_w,
            max_size=self.max_size,
            capped=bool(intervals and intervals[-1][1] == limit),
            scan_limit=limit,
            limiting_reason=limiting[1],
            upper_limiting_layer=upper[0],
            upper_limiting_reason=upper[1],
            notes=tuple(notes),
        )

    # --explain
    def explain(self, result: MinInputResult) -> MinInputResult:
        if not result.min_size:
            return result
        size = tuple(result.min_size)
        t = self.trace(*size)
        if t is None:
            return result
        layers = []
        for call in t.calls:
            shape = tuple(call.output_shapes[0][1:]) if call.output_shapes else ()
            layers.append(LayerSize(depth=call.depth, layer=call.path, type=call.type_name, output=shape))
        return replace(result, explain_size=size, layers=tuple(layers))


# --- helpers ------------------------------------------------------------------------------------


def _smallest_input(min_h, min_w, pair, min_square) -> tuple[int, int] | None:
    """The smaller (by area) of the smallest valid square and the per-dimension minima where those
    run together (``pair`` = (h, w, runs) when that was checked)."""
    candidates = [(min_square, min_square)] if min_square else []
    if min_h and min_w and (pair is None or (pair[:2] == (min_h, min_w) and pair[2])):
        candidates.append((min_h, min_w))
    return min(candidates, key=lambda hw: (hw[0] * hw[1], max(hw))) if candidates else None


def _smallest_area(program, best: tuple[int, int], cap: int) -> tuple[int, int]:
    """The smallest input by area (then by its longer side) among every ``(h, w)`` up to ``cap``
    whose area is below ``best``'s, replayed in chunks; ``best`` where none of them runs.

    The squares and the per-dimension minima miss inputs like 1x33 where BatchNorm in training
    needs ``h x w > 1`` and 1x1 fails: only a search over areas finds them."""
    area = best[0] * best[1]
    heights = np.arange(1, min(area - 1, cap) + 1, dtype=np.int64)
    counts = np.minimum((area - 1) // heights, cap)
    ends = np.cumsum(counts)  # candidate k is (heights[row], k - row's first index + 1)
    found: list[tuple[int, int]] = []
    for start in range(0, int(ends[-1]) if len(ends) else 0, _AREA_CHUNK):
        index = np.arange(start, min(int(ends[-1]), start + _AREA_CHUNK), dtype=np.int64)
        row = np.searchsorted(ends, index, side="right")
        hs = heights[row]
        ws = index - (ends - counts)[row] + 1
        ok = np.flatnonzero(program.replay(hs, ws).valid)
        found += [(int(hs[i]), int(ws[i])) for i in ok]
    return min(found, key=lambda hw: (hw[0] * hw[1], max(hw))) if found else best


def _layer_name(t: "Trace", op_index: int) -> str:
    op = t.ops[op_index]
    if op.call < 0:
        return f"(model) ({op.name})"
    call = t.calls[op.call]
    parents = {c.parent for c in t.calls}
    path = call.path or "(model)"
    if call.index in parents:  # not a leaf: name the op that ran in its forward
        return f"{path} ({call.type_name}: {op.name})"
    return f"{path} ({call.type_name})"


def _intervals(mask: np.ndarray) -> list[list[int]]:
    """Runs of True in ``mask`` (index 0 is size 1) as ``[lo, hi]`` sizes."""
    idx = np.flatnonzero(mask)
    if not len(idx):
        return []
    breaks = np.flatnonzero(np.diff(idx) > 1)
    starts = np.concatenate([idx[:1], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], idx[-1:]])
    return [[int(a) + 1, int(b) + 1] for a, b in zip(starts, ends)]


def _open_ended(intervals: list, cap: int) -> tuple:
    return tuple((lo, None if hi == cap else hi) for lo, hi in intervals)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def valid_text(intervals: Sequence[Sequence[int | None]], cap: int) -> str:
    """Compact text: ``15–4096+``, ``28–31``, ``even sizes 16–4096+ (2041 sizes)``; an interval
    ending in ``None`` (a result's open end) runs on to ``cap``."""
    if not intervals:
        return "none"
    intervals = [(lo, cap if hi is None else hi) for lo, hi in intervals]

    def one(lo, hi):
        if hi >= cap:
            return f"{lo}–{cap}+"
        return str(lo) if lo == hi else f"{lo}–{hi}"

    n = len(intervals)
    if n <= 4:
        return ", ".join(one(lo, hi) for lo, hi in intervals)
    los = [lo for lo, _ in intervals]
    lens = [hi - lo for lo, hi in intervals]
    for k in range(0, min(3, n - 4) + 1):
        period = los[k + 1] - los[k]
        length = lens[k]
        body = range(k, n - 1)
        if all(los[i + 1] - los[i] == period for i in body) and all(lens[i] == length for i in body) \
                and lens[-1] <= length:
            prefix = ", ".join(one(lo, hi) for lo, hi in intervals[:k])
            last = intervals[-1][1]
            end = f"{cap}+" if last >= cap else str(last)
            lo = los[k]
            count = n - k
            if length == 0 and period == 2:
                desc = f"{'even' if lo % 2 == 0 else 'odd'} sizes {lo}–{end} ({count} sizes)"
            elif length == 0:
                desc = f"every {_ordinal(period)} size {lo}–{end} ({count} sizes)"
            else:
                desc = f"runs of {length + 1} every {period} sizes {lo}–{end} ({count} intervals)"
            return f"{prefix}, {desc}" if prefix else desc
    head = ", ".join(one(lo, hi) for lo, hi in intervals[:3])
    return f"{head}, …, {one(*intervals[-1])} ({n} intervals)"
