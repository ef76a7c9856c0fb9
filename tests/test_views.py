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
