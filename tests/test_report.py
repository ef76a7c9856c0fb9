"""``archprobe report``: files, numbers against the analyzers, plots, and the committed reports/."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from archprobe.api import count, min_input
from archprobe.cli import main
from archprobe.errors import ExitCode
from archprobe.zoo.spec import resolve

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["alexnet", "alexnet-d2l", "googlenet", "googlenet-d2l", "lenet"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(capsys, *args) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code, capsys.readouterr().err


def rows(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["report", *MODELS, "-o", str(out)])
    assert exit_info.value.code == 0
    return out


def test_report_files(report_dir):
    names = {p.name for p in report_dir.iterdir()}
    assert {"report.md", "report.json", "zoo.csv", "counts.csv", "min_inputs.csv", "variants.csv",
            "params_vs_macs.png"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    md = (report_dir / "report.md").read_text()
    for section in ("## The zoo", "## Parameters and compute", "## Minimum input sizes",
                    "## ImageNet models vs their variants", "## Counting conventions"):
        assert section in md
    # the machine stays out of a static report's tables, report.json and report.md
    environment = json.loads((report_dir / "environment.json").read_text())
    assert environment["torch_version"] == torch.__version__
    assert "## Environment" not in md and "environment" not in json.loads((report_dir / "report.json").read_text())
    assert "![Parameters vs GMACs](params_vs_macs.png)" in md
    assert "Where the parameters live" in md


def test_report_numbers_match_the_analyzers(report_dir):
    counts = {r["model"]: r for r in rows(report_dir / "counts.csv")}
    mins = {r["model"]: r for r in rows(report_dir / "min_inputs.csv")}
    for name in MODELS:
        spec = resolve(name)
        expected = count(spec)
        assert int(counts[name]["params"]) == expected.params
        assert int(counts[name]["macs"]) == expected.macs
        assert int(counts[name]["flops"]) == expected.flops
        solved = min_input(spec)
        assert mins[name]["min_size"] == ";".join(map(str, solved.min_size))
    data = json.loads((report_dir / "report.json").read_text())
    assert [r["model"] for r in data["counts"]] == MODELS
    variants = {(v["imagenet"], v["d2l"]) for v in data["variants"]}
    assert variants == {("alexnet", "alexnet-d2l"), ("googlenet", "googlenet-d2l")}


def test_variants_pair_the_book_and_the_paper_versions_with_the_library_model():
    from archprobe.analysis.variants import variant_pairs

    counts = [count(name) for name in ("alexnet", "alexnet-d2l", "alexnet-paper", "lenet")]
    pairs = variant_pairs(counts, {"alexnet": "alexnet", "alexnet-d2l": "alexnet", "alexnet-paper": "alexnet"})
    assert [(p.imagenet, p.d2l, p.kind) for p in pairs] == [("alexnet", "alexnet-d2l", "d2l"),
                                                           ("alexnet", "alexnet-paper", "paper")]
    paper = pairs[1]
    assert (paper.imagenet_params, paper.d2l_params) == (61_100_840, 60_965_224)
    assert paper.d2l_input == (3, 227, 227) and paper.params_ratio == pytest.approx(60_965_224 / 61_100_840)
    assert variant_pairs(counts[2:], {}) == []  # no library model to pair the paper's with


def test_plots_are_valid_png(report_dir):
    import matplotlib.image as mpimg

    png = report_dir / "params_vs_macs.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    image = mpimg.imread(png)
    assert image.shape[0] > 200 and image.shape[1] > 200


def test_report_memory_section(report_dir):
    import matplotlib.image as mpimg

    from archprobe.api import memory

    md = (report_dir / "report.md").read_text()
    assert "## Memory" in md and "![Peak memory vs batch size](memory.png)" in md
    table = rows(report_dir / "memory.csv")
    assert [(r["model"], r["mode"]) for r in table] == [(m, mode) for m in MODELS for mode in ("eval", "train")]
    assert {r["batch_size"] for r in table} == {"32"}
    for r in table:
        expected = memory(r["model"], batch_size=32, mode=r["mode"])
        assert int(r["peak_bytes"]) == expected.peak_bytes and r["peak_at"] == (expected.peak_at or "")
    curve = rows(report_dir / "memory_curve.csv")
    googlenet = [r for r in curve if r["model"] == "googlenet" and r["mode"] == "train"]
    assert [int(r["batch_size"]) for r in googlenet] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert int(googlenet[-1]["peak_bytes"]) == memory("googlenet", batch_size=256, mode="train").peak_bytes
    peaks = [int(r["peak_bytes"]) for r in googlenet]
    assert peaks == sorted(peaks)
    image = mpimg.imread(report_dir / "memory.png")
    assert image.shape[0] > 300 and image.shape[1] > 600


def test_existing_directory_needs_force(capsys, report_dir):
    code, err = run(capsys, "report", "lenet", "-o", str(report_dir))
    assert code == ExitCode.USAGE and "--force" in err
    code, err = run(capsys, "report", "lenet", "-o", str(report_dir), "--force")
    assert code == 0
    assert [r["model"] for r in rows(report_dir / "counts.csv")] == ["lenet"]


def test_report_with_throughput(capsys, tmp_path):
    out = tmp_path / "tp"
    code, err = run(capsys, "report", "lenet", "-o", str(out), "--throughput", "--device", "cpu",
                    "-b", "4", "--mode", "inference", "--min-time", "0.05")
    assert code == 0, err
    tp = rows(out / "throughput.csv")
    assert len(tp) == 1 and tp[0]["status"] == "ok" and float(tp[0]["examples_per_sec"]) > 0
    assert (out / "throughput.png").read_bytes()[:8] == PNG_SIGNATURE
    md = (out / "report.md").read_text()
    assert "## Throughput" in md and "## Environment" in md  # measured rows say where they ran


STATIC_TABLES = ("zoo.csv", "counts.csv", "min_inputs.csv", "variants.csv", "memory.csv", "memory_curve.csv")


@pytest.mark.slow
def test_committed_reports_match_a_fresh_regeneration(capsys, tmp_path):
    committed = ROOT / "reports"
    assert (committed / "report.md").exists(), "run 'make demo' and commit reports/"
    code, err = run(capsys, "report", "-o", str(tmp_path / "fresh"))
    assert code == 0, err
    # byte for byte: nothing in them depends on the machine (that is in environment.json)
    for name in (*STATIC_TABLES, "report.md", "report.json"):
        assert (tmp_path / "fresh" / name).read_text() == (committed / name).read_text(), f"{name} is stale"
