"""The CLI contract: help without torch, one-line errors with exit codes, spec resolution."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from archprobe.cli import cli, main
from archprobe.errors import ExitCode


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "archprobe", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


COMMANDS = sorted(cli.commands)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_does_not_import_torch(command):
    args = ["--help"] if command is None else [command, "--help"]
    code = (
        "import sys; from archprobe.cli import main\n"
        "try:\n    main(%r)\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')" % args
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_examples_in_help(command):
    assert "Examples:" in (cli.commands[command].help or "")


def test_list_filters_and_formats(invoke):
    code, out, _ = invoke("list", "inception*", "--format", "json")
    assert code == 0
    names = [row["name"] for row in json.loads(out)]
    assert names == ["inception-resnet-v1", "inception-resnet-v2", "inception-v3", "inception-v4"]


def test_unknown_model_suggests(invoke):
    code, out, err = invoke("params", "vgg61")
    assert code == ExitCode.USAGE
    assert err.strip() == "error: unknown model 'vgg61'; did you mean vgg16 or vgg11 or vgg13?"
    assert "Traceback" not in err


def test_names_are_case_and_separator_insensitive(invoke):
    code, out, _ = invoke("params", "Inception_V3", "GOOGLENET-d2l", "-f", "json")
    assert code == 0
    assert [r["model"] for r in json.loads(out)] == ["inception-v3", "googlenet-d2l"]


@pytest.mark.parametrize("size", ["0", "-3", "abc", "3x", "1x2x3x4", "3x0x5"])
def test_bad_sizes_exit_2(invoke, size):
    code, _, err = invoke("params", "lenet", "--input-size", size)
    assert code == ExitCode.USAGE
    assert err.startswith("error: ") and err.count("\n") == 1


def test_size_too_small_names_the_layer(invoke):
    code, _, err = invoke("params", "alexnet", "--input-size", "32")
    assert code == ExitCode.USAGE
    assert "features" in err and "MaxPool2d" in err
    assert err.count("\n") == 1


def test_debug_shows_traceback():
    result = run("--debug", "params", "vgg61")
    assert result.returncode == ExitCode.USAGE
    assert "Traceback" in result.stderr


@pytest.fixture
def user_files(tmp_path):
    (tmp_path / "good.py").write_text(textwrap.dedent("""
        from torch import nn
        def build(in_channels=3, num_classes=10):
            return nn.Sequential(nn.Conv2d(in_channels, 8, 3), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Linear(8, num_classes))
        def broken():
            raise ValueError("no weights here")
        def not_a_module():
            return 42
        CONSTANT = 3
    """))
    (tmp_path / "syntax.py").write_text("def build(:\n    pass\n")
    return tmp_path


def test_user_file_model(invoke, user_files):
    code, out, _ = invoke("params", f"{user_files}/good.py:build", "--input-size", "3x32x32", "-f", "json")
    assert code == 0
    row = json.loads(out)[0]
    assert row["params"] == 8 * 3 * 9 + 8 + 8 * 10 + 10
    assert row["input_shape"] == [1, 3, 32, 32]


def test_user_module_in_channels_and_classes(invoke, user_files, monkeypatch):
    monkeypatch.syspath_prepend(str(user_files))
    code, out, _ = invoke("params", "good:build", "--in-channels", "1", "--num-classes", "5", "-f", "json")
    assert code == 0
    assert json.loads(out)[0]["params"] == 8 * 1 * 9 + 8 + 8 * 5 + 5


@pytest.mark.parametrize(
    "spec,message,exit_code",
    [
        ("missing.py:build", "no such file", ExitCode.USAGE),
        ("syntax.py:build", "syntax error", ExitCode.USAGE),
        ("good.py:bulid", "has no attribute 'bulid'; did you mean build?", ExitCode.USAGE),
        ("good.py:broken", "ValueError: no weights here", ExitCode.FAILURE),  # the factory's own bug
        ("good.py:not_a_module", "not an nn.Module", ExitCode.USAGE),
        ("good.py:CONSTANT", "is not callable", ExitCode.USAGE),
        ("no_such_package_xyz:build", "cannot import module", ExitCode.USAGE),
    ],
)
def test_bad_user_specs(invoke, user_files, monkeypatch, spec, message, exit_code):
    monkeypatch.chdir(user_files)
    code, _, err = invoke("params", spec)
    assert code == exit_code, err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_torchvision_and_timm_specs(invoke):
    code, out, _ = invoke("params", "tv:resnet18", "timm:resnet10t", "-f", "json")
    assert code == 0
    rows = json.loads(out)
    assert rows[0]["params"] == 11_689_512
    assert rows[1]["model"] == "timm:resnet10t" and rows[1]["params"] > 0


def test_zoo_glob_expands(invoke):
    code, out, _ = invoke("params", "vgg1[13]", "-f", "json")
    assert code == 0
    assert [r["model"] for r in json.loads(out)] == ["vgg11", "vgg13"]


def test_python_dash_m_entry_point():
    result = run("list", "lenet")
    assert result.returncode == 0 and "lenet" in result.stdout


def test_user_file_with_dataclass(invoke, tmp_path):
    (tmp_path / "dc.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass
        from torch import nn
        @dataclass
        class Config:
            width: int = 4
        def build():
            return nn.Conv2d(3, Config().width, 3)
    """))
    code, out, err = invoke("params", f"{tmp_path}/dc.py:build", "--input-size", "8", "-f", "json")
    assert code == 0, err
    assert json.loads(out)[0]["params"] == 4 * 3 * 9 + 4


def test_model_that_cannot_be_built_on_meta_falls_back(invoke):
    code, out, err = invoke("params", "tv:regnet_x_400mf", "-f", "json")
    assert code == 0, err
    assert json.loads(out)[0]["params"] == 5_495_976


def test_exit_codes_raised_by_click_are_kept():
    import click

    @cli.command("exit-probe", hidden=True)
    def exit_probe():
        raise click.exceptions.Exit(130)

    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["exit-probe"])
        assert exit_info.value.code == 130
    finally:
        del cli.commands["exit-probe"]


@pytest.mark.parametrize("command", ["params", "min-input", "memory"])
def test_mode_is_spelled_as_in_the_api_and_train_is_its_shorthand(invoke, command):
    extra = ["--device", "cpu", "-b", "2"] if command == "memory" else ["-b", "2"]
    code, by_mode, err = invoke(command, "lenet", "--mode", "train", *extra, "-f", "json")
    assert code == 0, err
    code, by_flag, err = invoke(command, "lenet", "--train", *extra, "-f", "json")
    assert code == 0, err
    code, in_eval, err = invoke(command, "lenet", *extra, "-f", "json")
    assert code == 0, err
    assert by_mode == by_flag != in_eval
    code, _, err = invoke(command, "lenet", "--train", "--mode", "eval")
    assert code == 2 and "--train means --mode train" in err


def test_plain_archprobe_prints_the_help(invoke):
    code, out, err = invoke()
    assert code == 0 and err == ""
    assert out.startswith("Usage: archprobe [OPTIONS] COMMAND") and "\n  params " in out
    assert out == invoke("--help")[1]
