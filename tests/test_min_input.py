"""The minimum-input solver against ground truth computed here by brute-force forward passes.

The truth is the CPU: the purpose-built nets of ``nets_tricky`` and random conv/pool stacks
(hypothesis) are scanned with real CPU forwards, and for a sample of the zoo every interval end
(and the sides around it) is run on the CPU too. The zoo's dense scans (eval, a sample of
torchvision models whose published ``weights.meta["min_size"]`` must also match, training mode
with batch 1 and 2) use archprobe's meta passes (``FastMeta``), which refuse what the CPU
kernels refuse (``archprobe.analysis.device_checks``, proven op by op in
``test_replay_rules.py``). Scans cover every side up to a little past the minimum (where passes
fail early and are cheap), plus windows around every interval end.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archprobe as ap
from archprobe.analysis.min_input import check_input_size, describe_valid_sizes, solve_min_input, valid_text
from archprobe.analysis.trace import FastMeta, make_input
from archprobe.errors import ExitCode, InputSizeError, UsageError
from archprobe.probe import Mode, Probe
from archprobe.report.columns import valid_sides
from archprobe.report.notes import notes_text
from archprobe.results import MinInputResult
from archprobe.zoo.registry import list_models
from archprobe.zoo.spec import ModelSpec, resolve

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nets_tricky  # noqa: E402

ZOO = [info.name for info in list_models()]
# The heaviest zoo models: their scans are still run, just marked slow.
SLOW = {"inception-resnet-v2", "inception-resnet-v1", "inception-v4", "densenet201", "densenet169",
        "densenet161", "resnet152", "bn-inception"}


# --- ground truth ----------------------------------------------------------------------------


def runs(model, shape, train: bool = False) -> bool:
    """One forward pass: does this input shape run? A model on meta runs under archprobe's
    ``FastMeta``; one with real weights (built on the CPU) runs a real CPU forward."""
    was = model.training
    model.train(train)
    on_meta = any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    try:
        with torch.no_grad():
            if on_meta:
                with FastMeta():
                    model(make_input(shape))
            else:
                model(torch.zeros(shape))
        return True
    except Exception:  # noqa: BLE001
        return False
    finally:
        model.train(was)


def solve(spec, model=None, *, train=False, batch_size=1, **kwargs) -> MinInputResult:
    """Solve for ``spec`` with an already built meta ``model`` (the tests scan the same one)."""
    probe = Probe(spec, model if model is not None else spec.build("meta"), batch_size, Mode.of(train))
    return solve_min_input(probe, **kwargs)


def probe_at(spec, model, height, width, *, train=False, batch_size=1) -> Probe:
    return Probe(spec.with_input_size(height, width), model if model is not None else spec.build("meta"),
                 batch_size, Mode.of(train))


def in_valid(intervals, side: int, cap: int) -> bool:
    return any(lo <= side <= (cap if hi is None else hi) for lo, hi in intervals)


def scan_intervals(model, channels: int, sides, batch: int = 1, train: bool = False, axis: str = "square",
                   anchor=None) -> list:
    """Brute-force intervals over ``sides`` (consecutive from 1): squares or one line at the anchor."""
    ok = []
    for s in sides:
        if axis == "square":
            shape = (batch, channels, s, s)
        elif axis == "h":
            shape = (batch, channels, s, anchor[1])
        else:
            shape = (batch, channels, anchor[0], s)
        ok.append(runs(model, shape, train))
    out = []
    for s, good in zip(sides, ok):
        if good and out and out[-1][1] == s - 1:
            out[-1][1] = s
        elif good:
            out.append([s, s])
    return out


def check_against_scan(result: MinInputResult, model, *, train: bool = False, extra=()) -> int:
    """Brute force every side from 1 to a little past the minimum, both ends of every interval
    and ``extra`` sides; return the number of passes."""
    channels, batch, cap = result.in_channels, result.batch_size, result.max_size
    top = (result.min_square or 40) + 4
    sides = set(range(1, min(top, cap) + 1)) | set(extra)
    for lo, hi in result.valid[:3] + result.valid[-1:]:
        sides |= {lo - 2, lo - 1, lo, lo + 1}
        if hi is not None:
            sides |= {hi - 1, hi, hi + 1, hi + 2}
    sides = sorted(s for s in sides if 1 <= s <= cap)
    for s in sides:
        assert runs(model, (batch, channels, s, s), train) == in_valid(result.valid, s, cap), (
            f"{result.model}: side {s}: solver says {in_valid(result.valid, s, cap)}"
        )
    if result.min_size:
        (mh, mw), (ah, aw) = result.min_size, result.anchor
        for h in range(max(1, mh - 2), mh + 2):
            assert runs(model, (batch, channels, h, aw), train) == (h >= mh if result.method == "scan"
                                                                    else in_valid(result.valid_h, h, cap)), h
        for w in range(max(1, mw - 2), mw + 2):
            assert runs(model, (batch, channels, ah, w), train) == (w >= mw if result.method == "scan"
                                                                    else in_valid(result.valid_w, w, cap)), w
    return len(sides)


# --- the zoo ---------------------------------------------------------------------------------


def _zoo_params():
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in ZOO]


@pytest.mark.parametrize("name", _zoo_params())
def test_zoo_model_eval_matches_brute_force(name):
    spec = resolve(name)
    model = spec.build("meta")
    result = solve(spec, model)
    assert result.method == "analytic", result.notes
    assert result.verified
    assert result.mode == "eval" and result.batch_size == 1
    check_against_scan(result, model, extra=[spec.input_shape[1]])
    # the anchor is the default size, which runs
    assert result.anchor == spec.input_shape[1:]
    if result.min_square and result.min_square > 1:
        assert result.limiting_layer and result.limiting_reason


# Built with real weights on the CPU: every interval end and the sides around it must agree with
# real forwards (eval, and training with batch 1 where BatchNorm bounds the size).
CPU_CHECKED = [("lenet", False), ("alexnet-d2l", False), ("nin-d2l", False), ("googlenet-d2l", False),
               ("googlenet-bn-d2l", True), ("googlenet", False), ("tv:alexnet", False), ("resnet18", True),
               ("densenet121", False), ("inception-v3", False), ("vgg11", False)]


@pytest.mark.parametrize("name,train", CPU_CHECKED)
def test_interval_ends_agree_with_real_cpu_forwards(name, train):
    spec = resolve(name)
    result = solve(spec, train=train)
    cpu = spec.build("cpu")
    sides = set()
    for lo, hi in result.valid[:2]:
        sides |= {lo - 1, lo}
        if hi is not None:
            sides |= {hi, hi + 1}
    sides = sorted(s for s in sides if 1 <= s <= result.max_size)
    assert sides
    for s in sides:
        assert runs(cpu, (1, spec.in_channels, s, s), train) == in_valid(result.valid, s, result.max_size), (
            f"{name}: side {s} on the CPU")
    h, w = result.min_size
    assert runs(cpu, (1, spec.in_channels, h, w), train)


D2L_EXPECTED = {
    # the d2l nets whose Linear after Flatten fixes the size: an interval, bounded above
    "lenet": [(28, 31)],
    "alexnet-d2l": [(195, 226)],
    "vgg11-d2l": [(224, 255)],
}


@pytest.mark.parametrize("name,valid", sorted(D2L_EXPECTED.items()))
def test_d2l_fixed_linear_intervals(name, valid):
    if name not in ZOO:
        pytest.skip(f"{name} is not registered")
    spec = resolve(name)
    model = spec.build("meta")
    result = solve(spec, model)
    assert [tuple(v) for v in result.valid] == valid
    assert "Linear" in result.limiting_layer and "Linear" in result.upper_limiting_layer
    lo, hi = valid[0]
    assert valid_sides(result) == f"{lo}–{hi}"
    assert not result.capped


# --- torchvision: the published min_size -----------------------------------------------------

TORCHVISION = {"alexnet": 63, "vgg16": 32, "googlenet": 15, "inception_v3": 75, "resnet18": 1, "densenet121": 29}


@pytest.mark.parametrize("name,expected", sorted(TORCHVISION.items()))
def test_torchvision_published_min_size(name, expected):
    import torchvision

    published = torchvision.models.get_model_weights(name).DEFAULT.meta["min_size"]
    assert published == (expected, expected)
    spec = resolve(f"tv:{name}")
    model = spec.build("meta")
    result = solve(spec, model)
    assert result.method == "analytic" and result.verified
    assert result.min_square == expected
    assert tuple(result.min_size) == published
    assert result.valid == ((expected, None),) and result.capped
    for s in range(max(1, expected - 3), expected + 2):
        assert runs(model, (1, 3, s, s)) == (s >= expected)


# --- training mode ---------------------------------------------------------------------------

TRAIN = [
    # (model, batch, expected min square): BatchNorm needs > 1 value per channel in training
    ("resnet18", 1, 33),
    ("resnet18", 2, 1),
    ("googlenet-bn-d2l", 1, 33),
    ("googlenet-bn-d2l", 2, 1),
    ("vgg11-bn", 1, 32),
    ("vgg11-bn", 2, 32),
    pytest.param("densenet121", 1, 61, marks=pytest.mark.slow),
    pytest.param("densenet121", 2, 29, marks=pytest.mark.slow),
    # tv:inception_v3's aux head runs only in training mode; with batch 1 its last BatchNorm
    # sees 1x1 maps below 347; with batch 2 the aux head still needs a 17x17 map (299)
    pytest.param("inception-v3", 1, 347, marks=pytest.mark.slow),
    pytest.param("inception-v3", 2, 299, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name,batch,expected", TRAIN)
def test_train_mode_batch_norm(name, batch, expected):
    spec = resolve(name)
    model = spec.build("meta")
    result = solve(spec, model, train=True, batch_size=batch)
    assert result.mode == "train" and result.batch_size == batch
    assert result.method == "analytic" and result.verified, result.notes
    assert result.min_square == expected
    for s in range(max(1, expected - 3), expected + 2):
        assert runs(model, (batch, spec.in_channels, s, s), train=True) == (s >= expected), s
    if batch == 1 and expected > 1:
        assert "BatchNorm" in result.limiting_layer
        assert "value per channel" in result.limiting_reason
    assert not model.training  # the solver restores the mode


def _smaller_inputs(height: int, width: int):
    """Every H x W with a smaller area than ``height x width``, smallest first."""
    area = height * width
    return sorted(((h, w) for h in range(1, area) for w in range(1, (area - 1) // h + 1)),
                  key=lambda hw: hw[0] * hw[1])


@pytest.mark.parametrize("name,expected", [("tv:resnet18", (1, 33)), ("googlenet-bn-d2l", (1, 33))])
def test_min_size_in_training_is_the_smallest_area_that_runs(name, expected):
    # batch 1 in training: BatchNorm needs more than one value per channel, so 1x1 fails, the
    # smallest square is 33x33, and 1x33 (area 33) is the smallest input that runs
    spec = resolve(name)
    model = spec.build("meta")
    result = solve(spec, model, train=True, batch_size=1)
    assert result.min_size == expected and result.min_square == 33 and result.verified
    assert runs(model, (1, spec.in_channels, *expected), train=True)
    assert not any(runs(model, (1, spec.in_channels, h, w), train=True) for h, w in _smaller_inputs(*expected))
    # the per-dimension minima stay, under their own names, and do not run together here
    assert not runs(model, (1, spec.in_channels, result.min_height, result.min_width), train=True)


def test_min_size_is_the_smallest_area_on_the_cpu():
    # the truth by real CPU forwards over every H x W up to 24: two 3x3 stride-2 convs, each with
    # BatchNorm; 7x11 leaves a 1x2 map, the least the last BatchNorm takes at batch 1
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, stride=2), torch.nn.BatchNorm2d(2), torch.nn.ReLU(),
                              torch.nn.Conv2d(2, 2, 3, stride=2), torch.nn.BatchNorm2d(2),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(2, 3))
    sides = range(1, 25)
    truth = min(((h, w) for h in sides for w in sides if runs(net, (1, 1, h, w), train=True)),
                key=lambda hw: (hw[0] * hw[1], max(hw)))
    result = ap.min_input(net, (1, 16, 16), mode="train")
    assert result.min_size == truth and result.min_square == 11 and truth == (7, 11)


def test_min_size_of_densenet_in_training_runs_where_its_square_is_larger():
    spec = resolve("densenet-d2l")
    model = spec.build("meta")
    result = solve(spec, model, train=True, batch_size=1)
    h, w = result.min_size
    assert result.min_square == 61 and h * w < 61 * 61 and result.verified
    assert runs(model, (1, 1, h, w), train=True)
    assert not runs(model, (1, 1, h - 1, w), train=True) and not runs(model, (1, 1, h, w - 1), train=True)


def test_train_and_eval_differ_only_where_they_should():
    spec = resolve("resnet18")
    model = spec.build("meta")
    ev = solve(spec, model)
    tr = solve(spec, model, train=True, batch_size=1)
    assert ev.min_square == 1 and tr.min_square == 33
    # min H at the default width: 1 runs in training (the map is 1x7), but 1x1 does not; the
    # smallest input that runs is 1x33 (a 1x2 map after the stem's /32), not the square
    assert (tr.min_height, tr.min_width) == (1, 1) and tr.min_size == (1, 33)
    assert any("coupled" in n for n in notes_text(tr.notes))
    assert runs(model, (1, 3, 1, 224), train=True) and not runs(model, (1, 3, 1, 1), train=True)


# --- purpose-built tricky nets ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(nets_tricky.TRICKY))
def test_tricky_nets(name):
    net = nets_tricky.TRICKY[name]
    spec = nets_tricky.spec(name)
    model = spec.build("meta")
    cpu = spec.build("cpu")  # the truth: real forwards
    cap = net.cap
    result = solve(spec, model, max_size=cap)
    truth = scan_intervals(cpu, net.input_shape[0], range(1, cap + 1))
    truth = [[lo, None if hi == cap else hi] for lo, hi in truth]
    assert truth == [list(v) for v in net.valid], "the hand-worked expectation is wrong"
    assert [list(v) for v in result.valid] == truth
    assert result.method == net.method, result.notes
    assert (result.min_height, result.min_width) == net.per_dim_min
    h, w = result.min_size  # the smallest input runs, and no smaller square does
    assert runs(cpu, (1, net.input_shape[0], h, w))
    assert h * w <= truth[0][0] ** 2
    if result.method == "analytic":
        assert result.verified
        ah, aw = result.anchor
        for axis, got in (("h", result.valid_h), ("w", result.valid_w)):
            line = scan_intervals(cpu, net.input_shape[0], range(1, cap + 1), axis=axis, anchor=(ah, aw))
            assert [list(v) for v in got] == [[lo, None if hi == cap else hi] for lo, hi in line], axis
    else:
        assert any("scanned" in n for n in notes_text(result.notes))
    for batch, expected in net.train_valid.items():
        tr = solve(spec, model, max_size=cap, train=True, batch_size=batch)
        truth = scan_intervals(cpu, net.input_shape[0], range(1, cap + 1), batch=batch, train=True)
        truth = [[lo, None if hi == cap else hi] for lo, hi in truth]
        assert truth == [list(v) for v in expected]
        assert [list(v) for v in tr.valid] == truth


def test_fixed_linear_names_both_bounds():
    result = solve(nets_tricky.spec("fixed-linear"), max_size=64)
    assert result.valid == ((14, 15),)
    assert result.limiting_layer == "fc (Linear)" and result.upper_limiting_layer == "fc (Linear)"
    assert result.limiting_reason == "gets 100 input features, expects 144"
    assert result.upper_limiting_reason == "gets 196 input features, expects 144"


def test_holes_are_described_by_their_period():
    result = solve(nets_tricky.spec("divisible-4"), max_size=4096)
    assert result.method == "analytic" and result.verified
    assert valid_sides(result) == "every 4th size 4–4096+ (1024 sizes)"
    assert result.valid[:2] == ((4, 4), (8, 8)) and result.valid[-1] == (4096, None)
    assert "cat" in result.limiting_layer and "disagree" in result.limiting_reason
    even = solve(nets_tricky.spec("even-only"), max_size=4096)
    assert valid_sides(even) == "2–4, even sizes 6–4096+ (2046 sizes)"


def test_non_square_kernel_solves_h_and_w_separately():
    result = solve(nets_tricky.spec("non-square-kernel"))
    assert result.min_size == (3, 9) and result.min_square == 9
    assert result.limiting_reason == "output would be 6x0"


def test_functional_ops_in_forward_are_seen():
    result = solve(nets_tricky.spec("functional-pool"))
    assert result.method == "analytic"
    assert result.limiting_layer == "(model) (FunctionalPool: max_pool2d_with_indices)"


def test_third_trace_settles_a_window_equal_to_the_map():
    # the global window is 1 high at both first traces: a third trace (a size with a 2-high map)
    # shows it follows the height; a constant window of 1 would reject every side >= 81
    result = solve(nets_tricky.spec("strided-global-pool"), max_size=128)
    assert result.method == "analytic" and result.verified
    assert len(result.traced) == 3 and result.traced[2][0] >= 81
    assert result.valid == ((1, None),)


def test_scan_fallback_reports_itself_and_progress():
    calls = []
    result = solve(nets_tricky.spec("pool-until-small"), max_size=40,
                   progress=lambda done, total: calls.append((done, total)))
    assert result.method == "scan" and result.scan_limit == 40
    assert "control flow depends on the input size" in notes_text(result.notes)[-1]
    assert calls[-1] == (40, 40)
    # the per-dimension minima (8 at width 32, 1 at height 32) run together, but 1x1 is smaller
    assert (result.min_height, result.min_width, result.anchor) == (8, 1, (32, 32))
    assert result.min_size == (1, 1)
    assert describe_valid_sizes(result) == (
        "valid square sides (scanned 1–40): 1–40+ (min HxW 1x1; min height 8 at width 32, min width 1 at height 32)"
    )


# --- random conv/pool stacks (hypothesis) ----------------------------------------------------

_conv = st.builds(lambda kh, kw, s, p, d: ("conv", kh, kw, s, p, d), st.integers(1, 5), st.integers(1, 5),
                  st.integers(1, 3), st.integers(0, 2), st.integers(1, 2))
_max = st.integers(1, 4).flatmap(lambda k: st.builds(lambda s, p, d, c: ("max", k, s, p, d, c), st.integers(1, 3),
                                                     st.integers(0, k // 2), st.integers(1, 2), st.booleans()))
_avg = st.integers(1, 4).flatmap(lambda k: st.builds(lambda s, p, c: ("avg", k, s, p, c), st.integers(1, 3),
                                                     st.integers(0, k // 2), st.booleans()))
_fmax = st.builds(lambda k, s: ("fmax", k, s), st.integers(1, 3), st.integers(1, 3))
_branch = st.sampled_from([1, 3]).flatmap(lambda k: st.builds(lambda s: ("branch", k, s, k // 2), st.integers(1, 2)))
_bn = st.just(("bn",))
_layers = st.lists(st.one_of(_conv, _max, _avg, _fmax, _branch, _bn), min_size=1, max_size=5)
CAP = 40


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers=_layers, head=st.sampled_from([None, "global", "fixed"]), at=st.integers(0, 1000),
       mode=st.sampled_from([(False, 1), (False, 1), (True, 1), (True, 2)]))
def test_random_stacks_match_brute_force(layers, head, at, mode):
    train, batch = mode
    base = nets_tricky.Stack(layers).to("meta")
    if head == "fixed":  # a Linear sized for a 24x24 input (eval), when that runs
        try:
            with torch.no_grad(), FastMeta():
                head = int(base(make_input((1, 2, 24, 24))).numel())
        except Exception:  # noqa: BLE001
            head = None
    model = nets_tricky.Stack(layers, head).to("meta")
    cpu = nets_tricky.Stack(layers, head)  # the truth: real forwards
    truth = scan_intervals(cpu, 2, range(1, CAP + 1), batch=batch, train=train)
    sides = [s for lo, hi in truth for s in range(lo, hi + 1)]
    default = sides[at % len(sides)] if sides else 24  # a default that runs, where one does
    spec = ModelSpec("stack", "user", (2, default, default), None, lambda: nets_tricky.Stack(layers, head))
    result = solve(spec, model, max_size=CAP, train=train, batch_size=batch)
    assert [list(v) for v in result.valid] == [[lo, None if hi == CAP else hi] for lo, hi in truth]
    if result.method == "analytic":
        assert result.verified
        for axis, got in (("h", result.valid_h), ("w", result.valid_w)):
            line = scan_intervals(cpu, 2, range(1, CAP + 1), batch=batch, train=train, axis=axis,
                                  anchor=result.anchor)
            assert [list(v) for v in got] == [[lo, None if hi == CAP else hi] for lo, hi in line], axis


# --- error messages and text -----------------------------------------------------------------


def test_check_input_size_names_layer_and_valid_sizes():
    spec = resolve("alexnet")
    model = spec.build("meta")
    with pytest.raises(InputSizeError) as err:
        check_input_size(probe_at(spec, model, 32, 32))
    assert str(err.value) == (
        "alexnet cannot take 3x32x32: features.12 (MaxPool2d) output would be 0x0;"
        " valid square sides: 63–4096+ (min HxW 63x63)"
    )
    assert err.value.exit_code == ExitCode.USAGE
    assert check_input_size(probe_at(spec, model, 63, 80)) is None


def test_check_input_size_upper_bound_and_train():
    spec = resolve("lenet")
    with pytest.raises(InputSizeError, match=r"lenet cannot take 1x40x40: fc.0 \(Linear\) gets 784 input"
                                             r" features, expects 256; valid square sides: 28–31"):
        check_input_size(probe_at(spec, None, 40, 40))
    spec = resolve("resnet18")
    with pytest.raises(InputSizeError, match="in training mode: layer4.0.bn1 .* value per channel"):
        check_input_size(probe_at(spec, None, 32, 32, train=True))
    assert check_input_size(probe_at(spec, None, 32, 32, train=True, batch_size=2)) is None


@pytest.mark.parametrize(
    "intervals,cap,text",
    [
        ([], 4096, "none"),
        ([[15, 4096]], 4096, "15–4096+"),
        ([[28, 31]], 4096, "28–31"),
        ([[5, 5], [9, 12]], 64, "5, 9–12"),
        ([[s, s] for s in range(16, 4097, 2)], 4096, "even sizes 16–4096+ (2041 sizes)"),
        ([[s, s] for s in range(3, 100, 3)], 4096, "every 3rd size 3–99 (33 sizes)"),
        ([[1, 2]] + [[s, s + 3] for s in range(32, 4096, 32)], 4096,
         "1–2, runs of 4 every 32 sizes 32–4067 (127 intervals)"),
        ([[1, 1], [5, 6], [10, 14], [30, 31], [40, 44]], 64, "1, 5–6, 10–14, …, 40–44 (5 intervals)"),
    ],
)
def test_valid_text(intervals, cap, text):
    assert valid_text(intervals, cap) == text


def test_describe_valid_sizes_when_nothing_runs():
    result = solve(nets_tricky.spec("bn-train-head"), train=True, batch_size=1, max_size=16)
    assert result.valid == () and result.min_size is None and result.method == "scan"
    assert describe_valid_sizes(result) == "no square side from 1 to 16 runs (scanned 1–16)"
    assert result.limiting_layer == "bn1 (BatchNorm1d)"


def test_bad_arguments():
    import archprobe as ap

    spec = nets_tricky.spec("dilated")
    with pytest.raises(UsageError):
        ap.min_input(spec, batch_size=0)
    with pytest.raises(UsageError):
        ap.min_input(spec, max_size=10**6)


# --- the command -----------------------------------------------------------------------------


def test_command_table(invoke):
    code, out, err = invoke("min-input", "lenet", "alexnet-d2l", "nin-d2l")
    assert code == 0, err
    assert "28–31" in out and "195–226" in out and "67–4096+" in out
    assert "Limiting layer" in out and "fc.0 (Linear)" in out
    assert "at side 32 (above the first interval), fc.0 (Linear) gets 400 input features" in out


def test_command_json_keys(invoke):
    code, out, _ = invoke("min-input", "googlenet", "lenet", "--format", "json")
    assert code == 0
    data = json.loads(out)
    for key in ("model", "mode", "batch_size", "min_size", "valid", "limiting_layer", "method", "verified"):
        assert key in data[0]
    assert data[0]["min_size"] == [15, 15] and data[0]["valid"] == [[15, None]]
    assert data[1]["valid"] == [[28, 31]] and data[1]["method"] == "analytic" and data[1]["verified"] is True


def test_command_explain(invoke):
    code, out, _ = invoke("min-input", "googlenet", "--explain", "--depth", "1")
    assert code == 0
    assert "googlenet (eval, batch 1) at 15x15: output of every layer" in out
    assert "maxpool3" in out and "inception5b" in out and "inception5b.branch1" not in out
    code, out, _ = invoke("min-input", "lenet", "--explain", "--format", "json")
    layers = json.loads(out)[0]["layers"]
    assert {"depth": 2, "layer": "conv.5", "type": "MaxPool2d", "output": [16, 4, 4], "hw": "4x4"} in layers


def test_command_train_batch(invoke):
    code, out, _ = invoke("min-input", "resnet18", "--train", "-b", "1", "--format", "csv")
    assert code == 0
    assert "resnet18,train,1," in out and ",33," in out


@pytest.mark.parametrize("args", [["nosuch"], ["lenet", "--max-size", "0"], ["lenet", "--depth", "2"],
                                  ["lenet", "--batch-size", "0"], []])
def test_command_bad_input_exits_2(invoke, args):
    code, _, err = invoke("min-input", *args)
    assert code == ExitCode.USAGE
    assert "rror" in err.strip().splitlines()[-1]
