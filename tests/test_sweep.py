"""Library globs and --exclude (one expansion everywhere), and the atlas: ``archprobe sweep``, its
store, its cells' statuses, resume, shards and merges (#21)."""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

import archprobe as ap
from archprobe.errors import SpecError
from archprobe.zoo.resolution import expand

# --- globs ------------------------------------------------------------------------------------------


def test_library_globs_expand_in_natural_order():
    assert expand(["tv:resnet*"]) == ["tv:resnet18", "tv:resnet34", "tv:resnet50", "tv:resnet101", "tv:resnet152"]
    assert expand(["tv:squeezenet*", "tv:mobilenet_v3_small", "vgg1[13]"]) == [
        "tv:squeezenet1_0", "tv:squeezenet1_1", "tv:mobilenet_v3_small", "vgg11", "vgg13"]
    convnexts = expand(["timm:convnext*"])
    assert convnexts[0] == "timm:convnext_atto" and all(c.startswith("timm:convnext") for c in convnexts)
    assert expand(["tv:RESNET1*"]) == ["tv:resnet18", "tv:resnet101", "tv:resnet152"]  # case, _ and - fold


def test_every_library_name_is_listed_without_a_network():
    import timm
    import torchvision

    assert expand(["tv:*"]) == ["tv:" + n for n in sorted(torchvision.models.list_models(module=torchvision.models),
                                                          key=lambda n: [int(p) if p.isdigit() else p for p in
                                                                         re.split(r"(\d+)", n)])]
    assert len(expand(["timm:*"])) == len(timm.list_models())


def test_exclude_globs():
    assert expand(["tv:resnet*"], ["*50", "tv:resnet1[05]*"]) == ["tv:resnet18", "tv:resnet34"]
    assert expand(["alexnet", "lenet", "tv:alexnet"], "alex*") == ["lenet"]  # a bare glob matches any name
    assert expand(["lenet*", "tv:squeezenet*"], ["tv:*"]) == expand(["lenet*"])  # a prefixed one, its library
    assert expand(["alexnet", "ALEXNET", "tv:alexnet", "tv:AlexNet"]) == ["alexnet", "tv:alexnet"]


def test_the_doors_exclude_over_all_their_models_as_the_command_line_does():
    # expand_all (the API's models: strings, specs, modules) leaves out what expand does, over the
    # whole list: a glob whose every match is excluded is no error while other models remain
    from torch import nn

    from archprobe.zoo.resolution import expand_all

    module = nn.Linear(2, 2)
    assert expand_all(["lenet", "*-d2l", module, "LENET"], "*-d2l") == ["lenet", module]
    assert expand_all(["lenet", "*-d2l"], "*-d2l") == expand(["lenet", "*-d2l"], "*-d2l") == ["lenet"]
    assert expand_all([module, "lenet"], "lenet") == [module]
    with pytest.raises(SpecError, match="every model of 'lenet nin-d2l' is excluded"):
        expand_all(["lenet", "nin-d2l"], ["lenet", "*-d2l"])


@pytest.mark.parametrize("models, exclude, message", [
    (["tv:nothing*"], None, "no torchvision classification model matches 'tv:nothing*'"),
    (["timm:nothing*"], None, "no timm model matches 'timm:nothing*'"),
    (["lenet"], ["le*"], "every model of 'lenet' is excluded by 'le*'"),
])
def test_empty_matches_are_usage_errors(models, exclude, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        expand(models, exclude)


def test_globs_and_exclude_in_commands(invoke):
    code, out, err = invoke("params", "tv:squeezenet*", "tv:mobilenet_v3_small", "--exclude", "*1_1", "-f", "json")
    assert code == 0, err
    assert [r["model"] for r in json.loads(out)] == ["tv:squeezenet1_0", "tv:mobilenet_v3_small"]
    code, out, err = invoke("min-input", "lenet*", "-x", "*-bn*", "-x", "*bn", "-f", "json")
    assert code == 0, err
    assert [r["model"] for r in json.loads(out)] == [n for n in expand(["lenet*"]) if "bn" not in n]
    code, out, err = invoke("list", "tv:squeezenet*", "lenet", "-f", "json")
    assert code == 0, err
    assert [r["name"] for r in json.loads(out)] == ["lenet", "tv:squeezenet1_0", "tv:squeezenet1_1"]


@pytest.mark.parametrize("args", [
    ("params", "tv:nothing*"),
    ("params", "lenet", "--exclude", "lenet"),
    ("memory", "timm:nothing*"),
    ("shapes", "tv:resnet1*", "-x", "tv:resnet1*"),
    ("sweep", "tv:nothing*", "-o", "{tmp}/atlas"),
])
def test_glob_usage_errors_are_one_line(invoke, tmp_path, args):
    code, out, err = invoke(*(a.format(tmp=tmp_path) for a in args))
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_api_expand():
    assert ap.expand(["tv:resnet*"], exclude=["*50", "*1??"]) == ["tv:resnet18", "tv:resnet34"]


# --- the sweep --------------------------------------------------------------------------------------

BAD_MODELS = '''
import time
from torch import nn


class Base(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)


class Raises(Base):
    def forward(self, x):
        raise ValueError("this model always fails")


class Sleeps(Base):
    def forward(self, x):
        time.sleep(10_000)


class Hog(Base):
    def forward(self, x):
        self.kept = bytearray(64 << 30)
        return self.conv(x)


def raises():
    return Raises()


def sleeps():
    return Sleeps()


def hog():
    return Hog()


def crash():
    import os
    os._exit(3)
'''


def _cells(directory: Path) -> list[tuple]:
    with sqlite3.connect(directory / "atlas.sqlite") as db:
        return db.execute("SELECT spec, analysis, status, error FROM cells ORDER BY spec, analysis").fetchall()


@pytest.mark.slow
def test_failing_cells_are_recorded_and_the_sweep_goes_on(invoke, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.py").write_text(BAD_MODELS)
    args = ["sweep", "lenet", "bad.py:raises", "bad.py:sleeps", "bad.py:hog", "bad.py:crash", "-o", "atlas",
            "-j", "2", "--cell-timeout", "5", "--cell-memory", "1GiB", "--json"]
    code, out, err = invoke(*args)
    assert code == 0, err
    statuses = {c["model"]: (c["status"], c["error"]) for c in json.loads(out)["cells"]}
    assert statuses["lenet"] == ("ok", None)
    assert statuses["bad.py:raises"][0] == "error" and "this model always fails" in statuses["bad.py:raises"][1]
    assert statuses["bad.py:sleeps"] == ("timeout", "ran past 5 s")
    assert statuses["bad.py:hog"][0] == "oom" and "MemoryError" in statuses["bad.py:hog"][1]
    assert statuses["bad.py:crash"] == ("crashed", "the worker exited with status 3")
    assert len(_cells(tmp_path / "atlas")) == 5
    assert "5 cells (5 computed, 0 from the store): 1 ok, 1 error, 1 timeout, 1 oom, 1 crashed" in err

    # a rerun computes nothing, failures included; --retry-failed computes those again
    code, out, err = invoke(*args[:-1], "-q")
    assert code == 0 and out == "" and err == ""
    code, out, err = invoke("sweep", "lenet", "bad.py:raises", "-o", "atlas", "--retry-failed", "--json")
    assert code == 0, err
    assert json.loads(out)["computed"] == 1 and json.loads(out)["cached"] == 1


def test_a_rerun_computes_nothing_and_the_store_holds_results(tmp_path):
    run = ap.sweep(["lenet", "alexnet-d2l"], tmp_path / "atlas", analyses=["params", "min-input"])
    assert (run.computed, run.cached) == (4, 0)
    assert [c.status for c in run.cells] == ["ok"] * 4
    counts = run.cells[0].result
    assert isinstance(counts, ap.ModelCounts) and counts == ap.count("lenet")
    assert run.cells[1].result == ap.min_input("lenet")  # the same analysis, revived from JSON intact
    again = ap.sweep(["lenet", "alexnet-d2l"], tmp_path / "atlas", analyses=["params", "min-input"])
    assert (again.computed, again.cached) == (0, 4) and again.cells == run.cells
    # other options are other cells
    other = ap.sweep(["lenet"], tmp_path / "atlas", analyses=["params"], input_size="1x30x30")
    assert other.computed == 1 and other.cells[0].result.input_shape == (1, 1, 30, 30)


def test_library_glob_sweep_and_its_keys(tmp_path):
    run = ap.sweep(["tv:squeezenet*", "tv:mobilenet_v3_small"], tmp_path / "atlas", jobs=2)
    assert [c.model for c in run.cells] == ["tv:squeezenet1_0", "tv:squeezenet1_1", "tv:mobilenet_v3_small"]
    assert [c.result.params for c in run.cells] == [1_248_424, 1_235_496, 2_542_856]  # torchvision's num_params
    versions = dict(run.cells[0].versions)
    assert set(versions) == {"torch", "torchvision", "timm"}
    import torch

    assert versions["torch"] == torch.__version__.split("+")[0] or versions["torch"] == torch.__version__


def test_shards_split_the_cells_and_merge(tmp_path, invoke):
    models, analyses = ["lenet", "alexnet-d2l", "nin-d2l", "vgg11-d2l"], ["params", "shapes"]
    shards = [ap.sweep(models, tmp_path / f"s{i}", analyses=analyses, shard=f"{i}/3") for i in (1, 2, 3)]
    keys = [{(c.model, c.analysis) for c in s.cells} for s in shards]
    assert sum(map(len, keys)) == 8 and set.union(*keys) == {(m, a) for m in models for a in analyses}
    code, _, err = invoke("sweep", "--merge", tmp_path / "s1", tmp_path / "s2", tmp_path / "s3", "-o", tmp_path / "all")
    assert code == 0 and "8 cells copied" in err
    merged = ap.sweep(models, tmp_path / "all", analyses=analyses)
    assert (merged.computed, merged.cached) == (0, 8)
    assert invoke("sweep", "--merge", tmp_path / "nothing", "-o", tmp_path / "all")[0] == 2


@pytest.mark.parametrize("args, message", [
    (["lenet", "-o", "{tmp}/a", "--shard", "4/3"], "--shard"),
    (["lenet", "-o", "{tmp}/a", "--shard", "x"], "--shard"),
    (["lenet", "-o", "{tmp}/a", "-a", "params,flops"], "unknown analysis flops"),
    (["nonexistent-model", "-o", "{tmp}/a"], "unknown model"),
    (["-o", "{tmp}/a"], "give the models"),
    (["lenet"], "--output"),
])
def test_sweep_usage_errors(invoke, tmp_path, args, message):
    code, out, err = invoke("sweep", *(a.format(tmp=tmp_path) for a in args))
    assert code == 2 and out == "", err
    assert message in err and err.count("\n") == 1


def test_help_does_not_import_torch():
    import subprocess

    code = ("import sys; from archprobe.cli import main\n"
            "try:\n    main(['sweep', '--help'])\nexcept SystemExit: pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


@pytest.mark.slow
def test_an_interrupted_sweep_keeps_its_cells_and_resumes(tmp_path):
    import os
    import sqlite3 as sql

    from processes import interrupt_when_ready

    (tmp_path / "slow.py").write_text(textwrap.dedent("""
        import time
        from torch import nn
        def build():
            time.sleep(60)
            return nn.Conv2d(3, 4, 3)
    """))
    store = tmp_path / "atlas" / "atlas.sqlite"

    def one_cell_stored() -> bool:
        try:
            with sql.connect(store) as db:
                return db.execute("SELECT COUNT(*) FROM cells").fetchone()[0] >= 1
        except sql.Error:
            return False

    command = [sys.executable, "-m", "archprobe", "sweep", "lenet", "slow.py:build", "-o", "atlas"]
    code, out, err = interrupt_when_ready(command, one_cell_stored, env=dict(os.environ), cwd=tmp_path)
    assert code == 130 and "interrupted after 1 of 2 cells" in err and "Traceback" not in err
    assert _cells(tmp_path / "atlas") == [("lenet", "params", "ok", None)]


@pytest.mark.slow
def test_a_sweep_killed_halfway_resumes_to_the_store_of_an_uninterrupted_one(tmp_path):
    import os
    import signal
    import subprocess
    import time

    (tmp_path / "held.py").write_text(textwrap.dedent("""
        import os
        import time
        from torch import nn
        def build():
            while os.path.exists("hold"):  # the test holds this model's cells until it has killed the sweep
                time.sleep(0.1)
            return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    """))
    command = [sys.executable, "-m", "archprobe", "sweep", "lenet", "held.py:build", "-a", "params,min-input",
               "-o", "atlas", "-q"]
    env = dict(os.environ)

    def stored(directory: Path) -> list[tuple]:
        with sqlite3.connect(directory / "atlas.sqlite") as db:
            return db.execute("SELECT key, spec, analysis, options, versions, status, error, result_type, result "
                              "FROM cells ORDER BY key").fetchall()

    def cells_so_far(directory: Path) -> int:
        try:
            return len(stored(directory))
        except sqlite3.OperationalError:  # the file exists, its table not yet: the sweep is creating it
            return 0

    (tmp_path / "hold").touch()
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not ((tmp_path / "atlas" / "atlas.sqlite").exists() and cells_so_far(tmp_path / "atlas") >= 2):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its workers, with the held cells in flight
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert sorted(row[1:3] for row in stored(tmp_path / "atlas")) == [("lenet", "min-input"), ("lenet", "params")]
    (tmp_path / "hold").unlink()
    resumed = subprocess.run([*command, "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert (summary["computed"], summary["cached"]) == (2, 2)
    whole = tmp_path / "whole"
    whole.mkdir()
    (whole / "held.py").write_text((tmp_path / "held.py").read_text())
    subprocess.run(command, cwd=whole, env=env, capture_output=True, text=True, timeout=300, check=True)
    assert stored(tmp_path / "atlas") == stored(whole / "atlas")  # the same cells, keys and results


# --- report --from DIR ------------------------------------------------------------------------------


def test_pareto_front():
    from archprobe.report.atlas import pareto_front
    from archprobe.results import AtlasPoint

    points = [AtlasPoint("a", "A", 0.60, params=1, macs=10, examples_per_sec=100.0),
              AtlasPoint("b", "B", 0.70, params=5, macs=5, examples_per_sec=50.0),
              AtlasPoint("c", "C", 0.65, params=9, macs=20, examples_per_sec=200.0),  # dominated by b on MACs
              AtlasPoint("d", "D", 0.80, params=20, macs=40, examples_per_sec=None)]
    assert pareto_front(points, "macs") == ["b", "d"]
    assert pareto_front(points, "params") == ["a", "b", "d"]
    assert pareto_front(points, "throughput") == ["c", "b"]


def test_report_from_a_sweep(invoke, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.py").write_text(BAD_MODELS)
    models = ["tv:squeezenet1_1", "tv:mobilenet_v3_small", "tv:shufflenet_v2_x0_5", "lenet", "bad.py:raises"]
    code, _, err = invoke("sweep", *models, "-a", "params,min-input", "-o", "atlas", "-j", "2")
    assert code == 0, err
    code, out, err = invoke("report", "--from", "atlas")
    assert code == 0 and out == "", err
    report = tmp_path / "atlas" / "report"
    assert {p.name for p in report.iterdir()} == {
        "report.md", "atlas.json", "params.csv", "min-input.csv", "failures.csv", "accuracy.csv", "pareto.csv",
        "accuracy_vs_macs.png", "accuracy_vs_params.png"}
    text = (report / "report.md").read_text()
    assert "## params (4 models)" in text and "## Failures (1)" in text and "this model always fails" in text
    assert "MobileNet_V3_Small_Weights.IMAGENET1K_V1" in text
    front = (report / "pareto.csv").read_text().splitlines()
    assert front[0] == "axis,rank,model,weights,acc1,value"
    assert "macs,1,tv:shufflenet_v2_x0_5,ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1,0.60552,40476448" in front
    assert "params,1,tv:squeezenet1_1,SqueezeNet1_1_Weights.IMAGENET1K_V1,0.58178,1235496" in front
    # a second report needs --force; models or options beside --from are refused
    assert invoke("report", "--from", "atlas")[0] == 2
    assert invoke("report", "--from", "atlas", "--force")[0] == 0
    code, _, err = invoke("report", "--from", "atlas", "lenet")
    assert code == 2 and "--from reports a sweep's store" in err
    code, _, err = invoke("report", "--from", "nowhere")
    assert code == 2 and "holds no sweep store" in err and err.count("\n") == 1
    files = ap.sweep_report(tmp_path / "atlas", tmp_path / "again")
    assert sorted(p.name for p in files) == sorted(p.name for p in report.iterdir())


def test_plan_expands_excludes_and_keys_user_files_by_content(tmp_path):
    from archprobe.bench.atlas import SweepConfig, plan_cells
    from archprobe.bench.store import Store

    (tmp_path / "net.py").write_text("from torch import nn\ndef build():\n    return nn.Conv2d(3, 4, 3)\n")
    spec = f"{tmp_path}/net.py:build"
    with Store(tmp_path / "atlas") as store:
        cells = plan_cells(["lenet*", "tv:squeezenet*", spec], ["params", "memory"], SweepConfig(), store,
                           exclude=["*bn*", "*1_0"])
        assert [c.model for c in cells[::2]] == [*(n for n in expand(["lenet*"]) if "bn" not in n),
                                                 "tv:squeezenet1_1", spec]
        assert cells[0].key != cells[1].key and dict(cells[1].options)["batch_size"] == 32
        before = cells[-1].key
        (tmp_path / "net.py").write_text("from torch import nn\ndef build():\n    return nn.Conv2d(3, 8, 3)\n")
        after = plan_cells([spec], ["memory"], SweepConfig(), store)[0].key
        assert after != before  # an edited file is a new cell
        timm_cells = plan_cells(["timm:*"], ["params"], SweepConfig(), store, shard=(1, 50))
        assert 0 < len(timm_cells) < 100


def test_the_memory_watchdog_stops_a_cell_without_the_address_space_limit(tmp_path, monkeypatch):
    """Where cells use CUDA the address space is not capped; the sweep's watchdog still stops a
    cell whose resident memory grows past its allowance."""
    from archprobe.bench import atlas

    (tmp_path / "grows.py").write_text(textwrap.dedent("""
        import time
        import numpy as np
        from torch import nn
        class Grows(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 3)
            def forward(self, x):
                kept = []
                for _ in range(400):
                    kept.append(np.ones(32 << 20, dtype=np.uint8))  # touched, so resident
                    time.sleep(0.02)
                return self.conv(x)
        def build():
            return Grows()
    """))
    monkeypatch.setattr(atlas._Spawner, "__call__", lambda self: atlas._Worker(*self.args[:4], address_limit=False))
    run = ap.sweep([f"{tmp_path}/grows.py:build", "lenet"], tmp_path / "atlas", cell_memory="256MiB", cell_timeout=60)
    assert [(c.status, c.error) for c in run.cells] == [
        ("oom", "its resident memory grew more than 256 MiB past its worker's own"), ("ok", None)]
