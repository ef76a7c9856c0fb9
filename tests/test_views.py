"""What a user reaches for (#23.11): the final train loss and accuracy in the training table, a
per-model input size in mixed comparisons, MACs/FLOPs by operator and by module, and results
that print as the command line's tables (terminal and notebook). Each is checked against a
reference: the book's per-epoch figures, the same model run alone, torch's own
``FlopCounterMode``, the command's own output."""

from __future__ import annotations

import json
import re

import pytest

QUICK = ["--threads", "1", "--limit-train", "512", "--limit-test", "256", "-b", "64"]


# --- (c) final train loss and train accuracy in the training table ------------------------------


def _table(text: str) -> list[dict[str, str]]:
    """The rows of a ``simple`` table (columns split on runs of two or more spaces)."""
    lines = text.strip("\n").splitlines()
    header, rule = lines[0], lines[1]
    spans = [m.span() for m in re.finditer(r"-+", rule)]
    rows = []
    for line in lines[2:]:
        if not line.strip():
            break
        rows.append({header[a:b if i + 1 < len(spans) else None].strip(): line[a:b if i + 1 < len(spans) else None].strip()
                     for i, (a, b) in enumerate(spans)})
    return rows


def test_training_table_shows_the_last_epoch_s_train_loss_and_accuracy(invoke):
    code, out, err = invoke("train", "lenet", "--dataset", "fake", "-d", "cpu", "--epochs", "2", *QUICK)
    assert code == 0, err
    # the reference: the book's line for the last epoch ("loss 0.516, train acc 0.871, test acc ...")
    line = re.search(r"lenet on cpu, epoch 2/2: loss ([\d.]+), train acc ([\d.]+), test acc ([\d.]+)", err)
    assert line, err
    (row,) = _table(out)
    assert (row["Train loss"], row["Train acc"], row["Test acc"]) == line.groups()
    header = out.splitlines()[0].split()
    assert header.index("Epochs") < header.index("loss") < header.index("Test")


def test_train_run_records_them_as_fields(invoke):
    code, out, err = invoke("train", "lenet", "--dataset", "fake", "-d", "cpu", "--epochs", "2", *QUICK, "-f", "json")
    assert code == 0, err
    (run,) = json.loads(out)
    assert run["train_loss"] == run["epochs"][-1]["train_loss"]
    assert run["train_acc"] == run["epochs"][-1]["train_acc"]
    assert run["train_loss"] != run["epochs"][0]["train_loss"]  # the last epoch's, not the first's


# --- (d) a per-model input size in mixed comparisons --------------------------------------------

MIXED = ["lenet", "nin-d2l", "tv:resnet18"]
SIZES = {"lenet": "1x30x30", "nin-d2l": "1x96x96", "tv:resnet18": "3x64x80"}


def _records(invoke, *args) -> list[dict]:
    code, out, err = invoke(*args, "-f", "json")
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("command", ["params", "memory", "min-input"])
def test_model_equals_size_gives_each_model_its_numbers_alone(invoke, command):
    mixed = _records(invoke, command, *MIXED, *[f"--input-size={m}={s}" for m, s in SIZES.items()])
    alone = [r for m, s in SIZES.items() for r in _records(invoke, command, m, "--input-size", s)]
    assert mixed == alone
    if command == "params":  # the sizes really differ, and are the ones asked for
        assert [tuple(r["input_shape"]) for r in mixed] == [(1, 1, 30, 30), (1, 1, 96, 96), (1, 3, 64, 80)]


def test_a_plain_size_beside_model_sizes_is_the_others(invoke):
    mixed = _records(invoke, "params", "lenet", "nin", "googlenet", "--input-size", "lenet=1x30x30",
                     "--input-size", "3x160x160")
    assert [r["input_shape"][1:] for r in mixed] == [[1, 30, 30], [3, 160, 160], [3, 160, 160]]
    assert mixed[2] == _records(invoke, "params", "googlenet", "--input-size", "3x160x160")[0]


def test_model_keys_match_as_typed_and_as_globs(invoke):
    typed = _records(invoke, "params", "LeNet", "nin_d2l", "--input-size", "lenet=1x30x30",
                     "--input-size", "NIN-D2L=1x100x100")
    assert [r["input_shape"][2:] for r in typed] == [[30, 30], [100, 100]]
    # a glob over the models given; the exact name wins over it
    globbed = _records(invoke, "params", "vgg11", "vgg13", "--input-size", "vgg*=64", "--input-size", "vgg13=96")
    assert [r["input_shape"][2:] for r in globbed] == [[64, 64], [96, 96]]


def test_shapes_takes_model_equals_size(invoke):
    alone = _records(invoke, "shapes", "tv:resnet18", "--input-size", "3x64x80")
    assert _records(invoke, "shapes", "tv:resnet18", "--input-size", "tv:resnet18=3x64x80") == alone


@pytest.mark.parametrize("args,message", [
    (["--input-size", "vgg=64"], "--input-size: 'vgg' is not one of the models given (lenet, nin)"),
    (["--input-size", "=64"], "--input-size: '=64' names no model"),
    (["--input-size", "lenet=abc"], "--input-size: invalid input size 'abc'"),
    (["--input-size", "lenet=28", "--input-size", "LeNet=30"], "--input-size: two sizes for model 'LeNet'"),
    (["--input-size", "64", "--input-size", "96"], "--input-size: two sizes for every model"),
])
def test_bad_model_sizes_are_one_line_usage_errors(invoke, args, message):
    code, out, err = invoke("params", "lenet", "nin", *args)
    assert code == 2 and out == ""
    assert err.startswith("error: " + message) and len(err.strip().splitlines()) == 1, err


def test_the_api_takes_a_mapping_or_the_command_line_s_text():
    import archprobe as ap
    from archprobe.api import report

    alone = ap.count("lenet", input_size="1x30x30")
    assert ap.count("lenet", input_size={"lenet": "1x30x30"}) == alone
    assert ap.count("lenet", input_size="lenet=1x30x30") == alone
    assert ap.memory("lenet", input_size={"LENET": (1, 30, 30)}) == ap.memory("lenet", input_size=(1, 30, 30))
    with pytest.raises(ap.UsageError, match="input_size: 'nin' is not one of the models given"):
        ap.count("lenet", input_size={"nin": 64})
    counts = report(["lenet", "nin"], memory=False, input_size={"lenet": "1x30x30", None: 64}).counts
    assert [c.input_shape for c in counts] == [(1, 1, 30, 30), (1, 3, 64, 64)]


def test_data_parallel_ranks_get_their_model_s_size(monkeypatch):
    from archprobe.bench import distributed as dist
    from archprobe.bench.sweeps import distributed_sweep
    from archprobe.bench.throughput import ThroughputConfig
    from archprobe.probe import Mode

    sent = []

    def local_sweep(pairs, options, *args, **kwargs):
        sent.extend((text, spec.input_shape, options["input_size"]) for text, spec in pairs)
        return iter(())

    monkeypatch.setattr(dist, "local_sweep", local_sweep)
    rows = distributed_sweep(["lenet", "nin"], ["cpu"], [Mode.EVAL], [2], ThroughputConfig(), nprocs=[2],
                             input_size=("lenet=1x30x30", "nin=3x64x64"))
    assert list(rows) == []
    assert sent == [("lenet", (1, 30, 30), "1x30x30"), ("nin", (3, 64, 64), "3x64x64")]


# --- (b) MACs and FLOPs by operator and by module -----------------------------------------------

# torchvision models of different kinds (residual, depthwise, concatenating, attention-free
# transformer-ish), at small sizes to keep the real CPU pass of the reference fast
BREAKDOWN_MODELS = [("resnet18", (3, 64, 64)), ("mobilenet_v2", (3, 64, 64)), ("googlenet", (3, 64, 64)),
                    ("squeezenet1_0", (3, 64, 64)), ("convnext_tiny", (3, 64, 64))]


def _flop_counter(name: str, shape, train: bool = False):
    """torch's own per-module, per-operator FLOP counts of a real CPU pass (2 per MAC)."""
    import torch
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    kwargs = {"init_weights": False, "aux_logits": False} if name == "googlenet" else {}
    model = torchvision.models.get_model(name, **kwargs).train(train)
    x = torch.randn(2 if train else 1, *shape)
    with FlopCounterMode(display=False) as counter:
        if train:
            out = model(x)
            torch.nn.functional.cross_entropy(out, torch.zeros(2, dtype=torch.long)).backward()
        else:
            with torch.no_grad():
                model(x)
    return type(model).__name__, counter.get_flop_counts()


@pytest.mark.parametrize("name,shape", BREAKDOWN_MODELS, ids=[n for n, _ in BREAKDOWN_MODELS])
def test_by_operator_and_by_module_sum_to_the_total_and_match_flop_counter_mode(name, shape):
    import torch

    import archprobe as ap

    spec = f"tv:{name}" if name != "googlenet" else "googlenet"  # the zoo's: no aux heads, as published
    total = ap.count(spec, input_size=shape)
    by_op = ap.breakdown(spec, input_size=shape)
    by_module = ap.breakdown(spec, input_size=shape, by="module")  # every module
    root, counts = _flop_counter(name, shape)

    # the rows add up to the model's totals exactly
    assert (by_op.macs, by_op.flops) == (total.macs, total.flops)
    assert sum(r.macs for r in by_op.rows) == total.macs and sum(r.flops for r in by_op.rows) == total.flops
    assert sum(r.own_macs for r in by_module.rows) == total.macs
    assert sum(r.own_flops for r in by_module.rows) == total.flops
    assert (by_module.rows[0].name, by_module.rows[0].macs, by_module.rows[0].flops) == ("", total.macs, total.flops)

    # per operator: torch counts 2 FLOPs per MAC of the operators archprobe takes MACs from
    reference = {str(op).removeprefix("aten."): n for op, n in counts["Global"].items()}
    assert {r.name: 2 * r.macs for r in by_op.rows if r.macs} == reference
    # per module: everything the module runs, its children included, as FlopCounterMode counts it
    modules = {("" if k == root else k.removeprefix(root + ".")): sum(v.values()) for k, v in counts.items()
               if k != "Global"}
    assert {r.name: 2 * r.macs for r in by_module.rows if r.macs} == modules
    assert torch  # imported for the reference


def test_by_operator_of_a_training_step_matches_flop_counter_mode():
    import archprobe as ap

    step = ap.breakdown("tv:resnet18", input_size=(3, 32, 32), batch_size=2, mode="train")
    counts = ap.count("tv:resnet18", input_size=(3, 32, 32), batch_size=2, mode="train")
    assert (step.macs, step.flops) == (counts.train_macs, counts.train_flops)
    assert sum(r.flops for r in step.rows) == counts.train_flops
    _, reference = _flop_counter("resnet18", (3, 32, 32), train=True)
    ops = {str(op).removeprefix("aten."): n for op, n in reference["Global"].items()}
    assert {r.name: 2 * r.macs for r in step.rows if r.macs} == ops
    assert "convolution_backward" in ops


def test_module_rows_fold_deeper_modules_into_their_own_part():
    import archprobe as ap

    full = ap.breakdown("tv:resnet18", input_size=(3, 64, 64), by="module")
    top = ap.breakdown("tv:resnet18", input_size=(3, 64, 64), by="module", depth=1)
    assert {r.depth for r in top.rows} == {0, 1}
    by_name = {r.name: r for r in full.rows}
    for row in top.rows:  # the same inclusive figures, whatever the depth shown
        assert (row.macs, row.flops, row.calls) == (by_name[row.name].macs, by_name[row.name].flops,
                                                    by_name[row.name].calls)
        if row.depth == 1:
            assert (row.own_macs, row.own_flops) == (row.macs, row.flops)
    assert top.rows[0].own_macs == 0 and sum(r.own_flops for r in top.rows) == top.flops
    # shapes --depth folds the same way: a row's own figures are the layer table's
    table = ap.layers("tv:resnet18", input_size=(3, 64, 64), depth=1)
    assert [(r.path, r.macs, r.flops) for r in table.rows] == [(r.name, r.own_macs, r.own_flops) for r in top.rows]


def test_params_by_operator_and_module_on_the_command_line(invoke):
    code, out, err = invoke("params", "tv:resnet18", "--input-size", "3x64x64", "--by", "operator", "-f", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert rows[0]["name"] == "convolution" and rows[0]["calls"] == 20
    import archprobe as ap

    assert sum(r["macs"] for r in rows) == ap.count("tv:resnet18", input_size=(3, 64, 64)).macs
    code, out, err = invoke("params", "lenet", "nin", "--by", "module")
    assert code == 0, err
    assert out.splitlines()[0].split()[:4] == ["Model", "Module", "Type", "Calls"]
    assert "Own MACs and Own FLOPs add up to them exactly" in out and "modules down to depth 1" in out
    assert {row["Model"] for row in _table(out)} == {"lenet", "nin"}


@pytest.mark.parametrize("args,message", [
    (["--by", "module", "--train"], "--by: a training step's backward runs outside the modules' calls"),
    (["--depth", "2"], "--depth applies to --by module"),
    (["--by", "operator", "--depth", "2"], "--depth applies to --by module"),
    (["--by", "operator", "--counter", "fvcore"], "--by breaks archprobe's own count down"),
])
def test_bad_breakdowns_are_one_line_usage_errors(invoke, args, message):
    code, out, err = invoke("params", "lenet", *args)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1, err


# --- (a) a readable view of any result: print() in a terminal, an HTML table in a notebook ------


def _stdout(invoke, *args) -> str:
    code, out, err = invoke(*args)
    assert code == 0, err
    return out


@pytest.mark.parametrize("call,command", [
    (lambda ap: ap.count("alexnet"), ["params", "alexnet"]),
    (lambda ap: ap.count("tv:googlenet"), ["params", "tv:googlenet"]),  # with the idle aux heads' note
    (lambda ap: ap.count("lenet", batch_size=256, mode="train"), ["params", "lenet", "--train", "-b", "256"]),
    (lambda ap: ap.layers("alexnet", rf=True), ["shapes", "alexnet", "--rf"]),
    (lambda ap: ap.layers("lenet"), ["shapes", "lenet"]),
    (lambda ap: ap.breakdown("resnet18", by="module", depth=1), ["params", "resnet18", "--by", "module"]),
    (lambda ap: ap.breakdown("tv:mobilenet_v2"), ["params", "tv:mobilenet_v2", "--by", "operator"]),
    (lambda ap: ap.min_input("googlenet"), ["min-input", "googlenet"]),
    (lambda ap: ap.min_input("lenet", explain=True), ["min-input", "lenet", "--explain"]),
    (lambda ap: ap.memory("resnet18", mode="train", batch_size=32, device="cpu"),
     ["memory", "resnet18", "--train", "-b", "32", "--device", "cpu"]),
], ids=["params", "params-idle", "params-train", "shapes-rf", "shapes", "by-module", "by-operator",
        "min-input", "min-input-explain", "memory"])
def test_print_shows_what_the_command_prints(invoke, call, command):
    import archprobe as ap

    result = call(ap)
    assert str(result) + "\n" == _stdout(invoke, *command)


class _Cells:
    """The header and body cells of the first HTML table, with the paragraphs after it."""

    def __init__(self, text: str):
        from html.parser import HTMLParser

        self.headers, self.rows, self.paragraphs = [], [], []
        cells = self

        class Parser(HTMLParser):
            where = None

            def handle_starttag(self, tag, attrs):
                if tag == "tr":
                    cells.rows.append([])
                elif tag in ("th", "td", "p"):
                    self.where = tag
                    (cells.headers if tag == "th" else cells.rows[-1] if tag == "td" else cells.paragraphs).append("")

            def handle_endtag(self, tag):
                self.where = None

            def handle_data(self, data):
                if self.where == "th":
                    cells.headers[-1] += data
                elif self.where == "td":
                    cells.rows[-1][-1] += data
                elif self.where == "p":
                    cells.paragraphs[-1] += data

        Parser(convert_charrefs=True).feed(text)
        self.headers = [h.strip() for h in self.headers]
        self.rows = [[c.strip() for c in row] for row in self.rows if row]
        self.paragraphs = [p.strip() for p in self.paragraphs]


@pytest.mark.parametrize("command", [["params", "tv:googlenet"], ["shapes", "alexnet", "--rf"],
                                     ["params", "resnet18", "--by", "operator"]])
def test_a_notebook_shows_the_same_table_as_html(invoke, command):
    import archprobe as ap

    result = {"params": lambda: ap.breakdown("resnet18") if "--by" in command else ap.count(command[1]),
              "shapes": lambda: ap.layers("alexnet", rf=True)}[command[0]]()
    shown = _Cells(result._repr_html_())
    printed = _stdout(invoke, *command)
    table, notes = printed.split("\n\n", 1)
    rows = _table(table)
    assert shown.headers == list(rows[0]) and shown.rows == [list(row.values()) for row in rows]
    assert shown.paragraphs == notes.strip().splitlines()


def test_results_stay_plain_data():
    import dataclasses

    import archprobe as ap
    from archprobe import results

    counts = ap.count("lenet")
    # the repr is the dataclass's own, the fields hold numbers; printing is the report's
    assert repr(counts).startswith("ModelCounts(model='lenet', input_shape=(1, 1, 28, 28), params=44426")
    assert dataclasses.asdict(counts)["macs"] == 281_640 and dataclasses.replace(counts) == counts
    assert results.VIEWS["text"].__module__ == "archprobe.report.views"
    # a result without a table prints as its repr; a note stays a plain value
    ceiling = results.Ceiling(1e9, "mm 64x64x64", "float32")
    assert str(ceiling) == repr(ceiling) and ceiling._repr_html_() is None
    note = results.Note.of("input_size_assumed", height=224, width=224)
    assert str(note) == repr(note)
    # the view is decided by the report: with none registered, the repr
    saved = dict(results.VIEWS)
    results.VIEWS.clear()
    try:
        assert str(counts) == repr(counts) and counts._repr_html_() is None
    finally:
        results.VIEWS.update(saved)


def test_training_results_print_as_the_training_tables():
    import archprobe as ap

    (run,) = ap.train("lenet", dataset="fake", epochs=1, limit_train=256, limit_test=128, threads=1, batch_size=64)
    rows = _table(str(run))
    (row,) = rows
    assert row["Model"] == "lenet" and row["Train loss"] == f"{run.train_loss:.3f}"
    assert row["Train acc"] == f"{run.train_acc:.3f}" and row["Test acc"] == f"{run.test_acc:.3f}"
    assert "Train loss, train acc, test acc: after the last finished epoch" in str(run)
    (epoch,) = _table(str(run.epochs[0]))
    assert epoch["Epoch"] == "1" and epoch["Train loss"] == row["Train loss"]
    assert _table(str(run.recipe))[0]["Optimizer"] == "adam"
