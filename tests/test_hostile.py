"""Hostile inputs: outputs that must not be destroyed, model code that prints, exits or raises,
torn files, interrupts, concurrent writers, NaN and inf, closed and ASCII-only streams.

Every case checks the exit code, that an error is ONE line on stderr, and what is on disk
afterwards. Commands run in-process; a subprocess only where a signal must come from outside.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from archprobe.errors import ExitCode, Interrupted, ModelCodeError, UsageError

# Tiny and Printing below: a 3x3 conv 3 -> 4 channels and a Linear 4 -> 10, with biases.
TINY_PARAMS = 4 * 3 * 9 + 4 + 4 * 10 + 10
# Throughput as fast as it goes: one eval row per batch size, no ceiling, no warm-up time.
FAST = ["-d", "cpu", "-m", "eval", "--warmup", "1", "--warmup-time", "0", "--min-iters", "2",
        "--min-time", "0.01", "--no-utilisation", "-q"]

MODELS = textwrap.dedent(
    """
    import os
    import signal
    import sys
    import time

    from torch import nn

    class Tiny(nn.Module):
        # 3 channels -> 10 classes; any side from 3 up (3x3 conv, global mean)
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 10)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))

    class Fixed(nn.Module):
        # a Linear after Flatten: takes sides 8 and 9 only
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(4 * 3 * 3, 10)

        def forward(self, x):
            return self.fc(self.pool(self.conv(x)).flatten(1))

    class Buggy(Tiny):
        def forward(self, x):
            self.conv(x)
            raise ValueError("bad weights\\nsecond line of the message")

    class ExitsInForward(Tiny):
        def forward(self, x):
            sys.exit(4)

    class RaisesKeyboardInterrupt(Tiny):
        def forward(self, x):
            raise KeyboardInterrupt

    class CtrlCOnDevice(Tiny):
        # runs on meta; on a real device a real SIGINT arrives from batch size 4 on
        def forward(self, x):
            if not x.is_meta and x.shape[0] >= 4:
                ctrl_c()
            return super().forward(x)

    def ctrl_c():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)

    def tiny():
        return Tiny()

    def fixed():
        return Fixed()

    def buggy():
        return Buggy()

    def exits_in_factory():
        sys.exit(3)

    def raises_in_factory():
        raise RuntimeError("no weights file\\nlooked in:\\n  ./weights")

    def exits_in_forward():
        return ExitsInForward()

    def raises_keyboard_interrupt():
        return RaisesKeyboardInterrupt()

    def ctrl_c_on_device():
        return CtrlCOnDevice()

    def ctrl_c_while_building():
        ctrl_c()

    def drops_a_file():
        # someone saves a file into the report directory while this report is being built
        with open(os.path.join(os.environ["ARCHPROBE_SECOND_OUT"], "notes.txt"), "w") as fh:
            fh.write("mine\\n")
        return Tiny()

    SECOND_WRITER = []

    def second_writer():
        # a second 'archprobe report' into the same directory, run while this one is built
        from archprobe.cli import main

        try:
            main(["report", f"{__file__}:tiny", "-o", os.environ["ARCHPROBE_SECOND_OUT"], "--force"])
        except SystemExit as exc:
            SECOND_WRITER.append(exc.code)
        return Tiny()
    """
)

PRINTING = textwrap.dedent(
    """
    from torch import nn

    print("noise: import")

    class Printing(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 10)

        def forward(self, x):
            print("noise: forward")
            return self.fc(self.conv(x).mean((2, 3)))

    def build():
        print("noise: factory")
        return Printing()
    """
)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    (root / "models.py").write_text(MODELS)
    (root / "printing.py").write_text(PRINTING)
    (root / "exits_at_import.py").write_text("import sys\nsys.exit(0)\n")
    (root / "silencer.py").write_text(
        "import io, sys\nfrom torch import nn\nsys.stdout = sys.stderr = io.StringIO()\n"
        "def build():\n    return nn.Conv2d(3, 4, 3)\n")
    return root


@pytest.fixture
def spec(files):
    def named(factory: str, file: str = "models.py") -> str:
        return f"{files / file}:{factory}"

    return named


def one_error_line(err: str) -> str:
    """The single line of an error on stderr."""
    assert err.count("\n") == 1 and err.endswith("\n"), repr(err)
    return err.rstrip("\n")


def leftovers(directory: Path) -> list[str]:
    """Hidden temp files or stage directories archprobe left behind."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# --- 1. -o never destroys what it points at -------------------------------------------------------


def _make_node(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
        return
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a twin of /dev/null
    except PermissionError:
        pytest.skip("creating device nodes is not permitted here")


@pytest.mark.parametrize("kind", ["device", "fifo"])
@pytest.mark.parametrize("command", ["params", "throughput"])
def test_a_device_or_fifo_is_written_in_place_not_replaced(invoke, tmp_path, spec, command, kind):
    node = tmp_path / "node"
    _make_node(node, kind)
    before = node.stat()
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(node.read_text()), daemon=True)
    if kind == "fifo":  # a FIFO's writer waits for a reader
        reader.start()
    extra = FAST if command == "throughput" else []
    code, out, err = invoke(command, spec("tiny"), "--input-size", "8", *extra, "-f", "csv", "-o", node)
    assert code == 0, err
    after = node.stat()
    assert (after.st_ino, after.st_mode, after.st_rdev) == (before.st_ino, before.st_mode, before.st_rdev)
    assert leftovers(tmp_path) == [] and out == ""
    if kind == "fifo":
        reader.join(timeout=30)
        assert [row["model"] for row in csv.DictReader(io.StringIO(got[0]))] == [spec("tiny")]


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_a_symlink_is_followed_and_its_target_replaced(invoke, tmp_path, spec, fmt):
    target = tmp_path / f"real.{fmt}"
    target.write_text("old contents\n")
    link = tmp_path / f"link.{fmt}"
    link.symlink_to(target.name)
    code, _, err = invoke("params", spec("tiny"), "--input-size", "8", "-o", link)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == target.name
    text = target.read_text()
    if fmt == "json":
        assert json.loads(text)[0]["model"].endswith(":tiny")
    else:
        assert next(csv.reader(io.StringIO(text)))[0] == "model"
    assert leftovers(tmp_path) == []


def test_a_symlink_to_a_csv_is_appended_through(invoke, tmp_path, spec):
    target = tmp_path / "rows.csv"
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    for _ in range(2):
        code, _, err = invoke("throughput", spec("tiny"), "--input-size", "8", "-b", "2", *FAST, "-o", link)
        assert code == 0, err
    assert link.is_symlink()
    rows = list(csv.DictReader(target.open(newline="")))
    assert [r["batch_size"] for r in rows] == ["2", "2"]


def test_an_open_descriptor_is_streamed_to(invoke, tmp_path, spec):
    read_end, write_end = os.pipe()
    try:
        code, out, err = invoke("params", spec("tiny"), "--input-size", "8", "-f", "json",
                                "-o", f"/proc/self/fd/{write_end}")
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            rows = json.loads(pipe.read())
    finally:
        for fd in (read_end, write_end):
            try:
                os.close(fd)
            except OSError:
                pass
    assert code == 0, err
    assert out == "" and rows[0]["params"] == TINY_PARAMS


def test_a_directory_is_refused(invoke, tmp_path, spec):
    code, _, err = invoke("params", spec("tiny"), "-o", tmp_path)
    assert code == ExitCode.USAGE
    assert "is a directory" in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name,fmt_args,check",
    [
        ("p.json", [], lambda text: json.loads(text)[0]["params"] == TINY_PARAMS),
        ("p.csv", [], lambda text: text.startswith("model,input_shape,params")),
        ("p.md", [], lambda text: text.startswith("| Model")),
        ("p.json", ["-f", "table"], lambda text: text.startswith("Model ")),  # -f wins
    ],
)
def test_every_command_takes_the_format_from_the_suffix(invoke, tmp_path, spec, name, fmt_args, check):
    out_file = tmp_path / name
    code, out, err = invoke("params", spec("tiny"), "--input-size", "8", *fmt_args, "-o", out_file)
    assert code == 0, err
    assert out == "" and check(out_file.read_text())


@pytest.mark.parametrize("command", ["list", "min-input"])
def test_other_commands_take_the_format_from_the_suffix_too(invoke, tmp_path, spec, command):
    out_file = tmp_path / "out.json"
    args = ["lenet"] if command == "list" else [spec("tiny"), "--input-size", "8"]
    code, out, err = invoke(command, *args, "-o", out_file)
    assert code == 0, err
    assert out == "" and len(json.loads(out_file.read_text())) == 1


# --- 2. and 5. model code that prints or exits -----------------------------------------------------


def test_printing_model_code_goes_to_stderr(invoke, spec):
    code, out, err = invoke("params", spec("build", "printing.py"), "--input-size", "8", "-f", "json")
    assert code == 0, err
    assert json.loads(out)[0]["params"] == TINY_PARAMS  # stdout is the JSON alone
    assert {"noise: import", "noise: factory", "noise: forward"} <= set(err.splitlines())


def test_model_code_cannot_take_the_streams_away(invoke, spec):
    code, out, err = invoke("params", spec("build", "silencer.py"), "--input-size", "8", "-f", "json")
    assert code == 0, err
    assert json.loads(out)[0]["params"] == 4 * 3 * 9 + 4


def test_printing_model_code_keeps_throughput_csv_clean(invoke, spec):
    code, out, err = invoke("throughput", spec("build", "printing.py"), "--input-size", "8", "-b", "2",
                            *FAST, "-f", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["batch_size"], r["status"]) for r in rows] == [("2", "ok")]
    assert "noise: forward" in err


def test_printing_live_module_goes_to_stderr(capsys):
    import torch
    from torch import nn

    import archprobe as ap

    class Loud(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            print("noise: forward")
            return self.conv(x)

    model = Loud()
    weight = model.conv.weight.detach().clone()
    assert ap.count(model, input_size=8).params == 4 * 3 * 9 + 4
    out, err = capsys.readouterr()
    assert out == "" and "noise: forward" in err
    assert torch.equal(model.conv.weight, weight)


@pytest.mark.parametrize(
    "command,extra",
    [("params", []), ("throughput", FAST), ("report", ["--force"])],
)
def test_sys_exit_in_the_factory_is_a_one_line_error(invoke, tmp_path, spec, files, command, extra):
    out_dir = ["-o", tmp_path / "report"] if command == "report" else []
    code, out, err = invoke(command, spec("exits_in_factory"), "--input-size", "8", *extra, *out_dir)
    assert code == ExitCode.FAILURE
    line = one_error_line(err)
    assert "sys.exit(3)" in line and f"{files / 'models.py'}:" in line
    assert out == ""
    assert list(tmp_path.iterdir()) == []  # no report, no stage left


def test_sys_exit_at_import_is_a_one_line_error(invoke, spec, files):
    code, out, err = invoke("params", spec("build", "exits_at_import.py"), "-f", "json")
    assert code == ExitCode.FAILURE
    line = one_error_line(err)
    assert "sys.exit(0)" in line and f"{files / 'exits_at_import.py'}:2" in line
    assert out == ""


def test_sys_exit_in_forward_is_a_one_line_error(invoke, spec):
    code, out, err = invoke("params", spec("exits_in_forward"), "--input-size", "8")
    assert code == ExitCode.FAILURE
    assert "sys.exit(4)" in one_error_line(err) and out == ""


def test_keyboard_interrupt_raised_by_model_code_is_its_error(invoke, spec):
    code, _, err = invoke("params", spec("raises_keyboard_interrupt"), "--input-size", "8")
    assert code == ExitCode.FAILURE
    assert "raised KeyboardInterrupt" in one_error_line(err)


# --- 6. a bug in forward is the model's error, a size problem is a size problem ----------------------


def test_a_bug_in_forward_is_named_not_blamed_on_the_size(invoke, spec):
    code, out, err = invoke("params", spec("buggy"), "--input-size", "8")
    assert code == ExitCode.FAILURE
    line = one_error_line(err)
    assert line.endswith("failed on input 1x3x8x8: ValueError in <root> (Buggy): bad weights")
    assert out == ""


def test_a_multi_line_error_in_a_factory_is_one_line(invoke, spec):
    code, _, err = invoke("params", spec("raises_in_factory"), "--input-size", "8")
    assert code == ExitCode.FAILURE
    assert one_error_line(err).endswith(":raises_in_factory failed: RuntimeError: no weights file")


def test_a_size_that_another_size_fixes_is_still_a_size_error(invoke, spec):
    code, _, err = invoke("params", spec("fixed"), "--input-size", "16")
    assert code == ExitCode.USAGE
    line = one_error_line(err)
    assert "cannot take 3x16x16: fc (Linear)" in line and "valid square sides: 8–9" in line


def test_a_live_module_that_raises_gives_the_same_error():
    from torch import nn

    import archprobe as ap

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            raise RuntimeError("my own bug\nmore detail")

    with pytest.raises(ModelCodeError) as info:
        ap.count(Broken(), input_size=(3, 8, 8))
    assert info.value.exit_code == ExitCode.FAILURE
    assert str(info.value) == "Broken failed on input 1x3x8x8: RuntimeError in <root> (Broken): my own bug"


# --- 3. and 4. reports built aside and swapped in -------------------------------------------------


def _old_report(directory: Path) -> dict[str, bytes]:
    """A previous run's report, with tables and a plot the next run will not write."""
    directory.mkdir()
    for name in ("report.md", "report.json", "variants.csv", "zoo.csv", "throughput.csv", "throughput.png"):
        (directory / name).write_bytes(f"old {name}\n".encode())
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def _contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def test_report_force_leaves_no_stale_file(invoke, tmp_path, spec):
    out_dir = tmp_path / "report"
    _old_report(out_dir)
    code, _, err = invoke("report", spec("tiny"), "-o", out_dir, "--force")
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "counts.csv", "environment.json", "memory.csv", "memory.png", "memory_curve.csv", "min_inputs.csv",
        "params_vs_macs.png", "report.json", "report.md", "zoo.csv"]
    assert json.loads((out_dir / "report.json").read_text())["models"] == [spec("tiny")]
    assert leftovers(tmp_path) == []


def test_report_force_refuses_a_directory_with_other_files(invoke, tmp_path, spec):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work\n")
    code, _, err = invoke("report", spec("tiny"), "-o", home, "--force")
    assert code == ExitCode.USAGE
    assert "thesis.tex" in one_error_line(err)
    assert _contents(home) == {"thesis.tex": b"years of work\n"}


def test_an_interrupted_report_leaves_the_old_one_whole(invoke, tmp_path, spec):
    out_dir = tmp_path / "report"
    old = _old_report(out_dir)
    code, _, err = invoke("report", spec("ctrl_c_while_building"), "-o", out_dir, "--force")
    assert code == ExitCode.INTERRUPTED
    assert one_error_line(err) == f"interrupted; {out_dir} is unchanged"
    assert _contents(out_dir) == old
    assert leftovers(tmp_path) == []


def test_an_interrupted_report_throughput_keeps_its_rows(invoke, tmp_path, spec):
    out_dir = tmp_path / "report"
    old = _old_report(out_dir)
    code, _, err = invoke("report", spec("ctrl_c_on_device"), "--input-size", "8", "-o", out_dir,
                          "--force", "--throughput", "--device", "cpu", "--mode", "eval", "-b", "2,4",
                          "--min-time", "0.01")
    assert code == ExitCode.INTERRUPTED
    kept = tmp_path / "report-throughput-interrupted.csv"
    assert one_error_line(err) == f"interrupted after 1 throughput row; they are in {kept}; {out_dir} is unchanged"
    rows = list(csv.DictReader(kept.open(newline="")))
    assert [(r["batch_size"], r["status"]) for r in rows] == [("2", "ok")]
    assert _contents(out_dir) == old
    assert leftovers(tmp_path) == []


def test_a_second_writer_meanwhile_is_not_overwritten_without_force(invoke, tmp_path, spec, monkeypatch):
    out_dir = tmp_path / "report"
    monkeypatch.setenv("ARCHPROBE_SECOND_OUT", str(out_dir))
    code, _, err = invoke("report", spec("second_writer"), "--input-size", "8", "-o", out_dir)
    assert code == ExitCode.USAGE
    second, ours = err.split("\n", 1)  # the second writer (same process) says what it wrote
    assert second.startswith("wrote 10 files to ")
    assert one_error_line(ours).endswith("was written by another run meanwhile; use --force to overwrite it")
    assert json.loads((out_dir / "report.json").read_text())["models"] == [spec("tiny")]  # the other's, whole
    assert leftovers(tmp_path) == []


def test_a_second_writer_meanwhile_is_replaced_whole_with_force(invoke, tmp_path, spec, monkeypatch):
    out_dir = tmp_path / "report"
    monkeypatch.setenv("ARCHPROBE_SECOND_OUT", str(out_dir))
    code, _, err = invoke("report", spec("second_writer"), "--input-size", "8", "-o", out_dir, "--force")
    assert code == 0, err
    document = json.loads((out_dir / "report.json").read_text())
    assert document["models"] == [spec("second_writer")]
    counts = list(csv.DictReader((out_dir / "counts.csv").open(newline="")))
    assert [r["model"] for r in counts] == [spec("second_writer")]  # no file of the other run mixed in
    assert leftovers(tmp_path) == []


def test_a_file_saved_into_the_report_meanwhile_is_not_swept_away(invoke, tmp_path, spec, monkeypatch):
    out_dir = tmp_path / "report"
    old = _old_report(out_dir)
    monkeypatch.setenv("ARCHPROBE_SECOND_OUT", str(out_dir))
    code, _, err = invoke("report", spec("drops_a_file"), "--input-size", "8", "-o", out_dir, "--force")
    assert code == ExitCode.USAGE
    assert "not part of a report (notes.txt)" in one_error_line(err)
    assert _contents(out_dir) == {**old, "notes.txt": b"mine\n"}
    assert leftovers(tmp_path) == []


def test_a_symlink_loop_as_the_report_directory_is_refused_before_any_work(invoke, tmp_path, spec):
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    code, _, err = invoke("report", spec("build", "printing.py"), "-o", loop)
    assert code == ExitCode.USAGE
    assert one_error_line(err) == f"error: cannot use {loop}: Too many levels of symbolic links"
    assert leftovers(tmp_path) == []  # no stage made


def test_a_signal_as_the_stage_is_made_leaves_no_stage(tmp_path, monkeypatch):
    import tempfile

    from archprobe.plumbing.files import staged_directory
    from archprobe.plumbing.signals import handling_signals

    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp_under_sigterm(**kwargs):
        made = real_mkdtemp(**kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return made

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp_under_sigterm)
    with handling_signals(), pytest.raises(Interrupted):
        with staged_directory(tmp_path / "report", replace=False):
            pytest.fail("the signal is raised as the stage is made")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("earlier", [False, True])
def test_a_signal_during_the_first_row_append_keeps_the_row_and_earlier_rows(invoke, tmp_path, spec, monkeypatch,
                                                                             earlier):
    from archprobe.runtime.sink import CsvSink

    first = tmp_path / "report-throughput-interrupted.csv"
    if earlier:  # an earlier interrupted run's rows
        first.write_text("mine\n")
    syncs = []
    real_sync = CsvSink._sync

    def sync_under_sigint(sink):  # the first sync writes the header, the second the first row
        syncs.append(1)
        if len(syncs) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        real_sync(sink)

    monkeypatch.setattr(CsvSink, "_sync", sync_under_sigint)
    out_dir = tmp_path / "report"
    code, _, err = invoke("report", spec("tiny"), "--input-size", "8", "-o", out_dir, "--no-memory", "--throughput",
                          "--device", "cpu", "--mode", "eval", "-b", "2,4", "--min-time", "0.01")
    assert code == ExitCode.INTERRUPTED
    kept = tmp_path / f"report-throughput-interrupted{'-2' if earlier else ''}.csv"
    assert one_error_line(err) == f"interrupted after 1 throughput row; they are in {kept}; nothing was written to {out_dir}"
    assert [(r["batch_size"], r["status"]) for r in csv.DictReader(kept.open(newline=""))] == [("2", "ok")]
    assert not earlier or first.read_text() == "mine\n"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name,kind", [("report.md", "a directory"), ("report.json", "a symlink")])
def test_force_refuses_a_report_name_that_is_not_a_file_before_any_work(invoke, tmp_path, spec, name, kind):
    out_dir = tmp_path / "report"
    _old_report(out_dir)
    (out_dir / name).unlink()
    thesis = tmp_path / "thesis.tex"
    if kind == "a directory":  # the user's directory, whatever its name
        (out_dir / name).mkdir()
        thesis = out_dir / name / "thesis.tex"
    else:
        (out_dir / name).symlink_to(thesis)
    thesis.write_text("years of work\n")
    old = sorted(p.name for p in out_dir.iterdir())
    code, _, err = invoke("report", spec("build", "printing.py"), "-o", out_dir, "--force")
    assert code == ExitCode.USAGE and "noise" not in err  # refused before the model was imported
    assert one_error_line(err).startswith(f"error: {out_dir / name} is {kind}, not a file of a report")
    assert thesis.read_text() == "years of work\n" and sorted(p.name for p in out_dir.iterdir()) == old
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("force", [False, True])
def test_a_mount_point_gets_the_report_moved_in(invoke, tmp_path, spec, monkeypatch, force):
    import errno

    import archprobe.plumbing.files as files_module

    out_dir = tmp_path / "mnt"
    if force:
        _old_report(out_dir)  # its throughput.csv and throughput.png are stale: they go
    else:
        out_dir.mkdir()
    (out_dir / "lost+found").mkdir()  # the file system's own: neither the user's nor the report's
    real_rename = os.rename

    def rename_like_the_kernel(source, destination):  # a mount point cannot be renamed over
        if Path(destination) == out_dir.resolve():
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(destination))
        real_rename(source, destination)

    monkeypatch.setattr(files_module, "is_mount_point", lambda path: Path(path) == out_dir.resolve())
    monkeypatch.setattr(os, "rename", rename_like_the_kernel)
    code, _, err = invoke("report", spec("tiny"), "-o", out_dir, *(["--force"] if force else []))
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "counts.csv", "environment.json", "lost+found", "memory.csv", "memory.png", "memory_curve.csv",
        "min_inputs.csv", "params_vs_macs.png", "report.json", "report.md", "zoo.csv"]
    assert json.loads((out_dir / "report.json").read_text())["models"] == [spec("tiny")]
    assert leftovers(out_dir) == [] and leftovers(tmp_path) == []


def test_mount_points_are_told_from_directories(tmp_path):
    from archprobe.plumbing.files import is_mount_point

    assert is_mount_point("/") and not is_mount_point(tmp_path)


# --- 7. the CSV sink checks what it appends to ------------------------------------------------------


@pytest.mark.parametrize(
    "contents,why",
    [
        ("HEADER\nrow,that,was,cut", "does not end in a newline"),
        ("a,b,c\n1,2,3\n", "different CSV columns"),
    ],
)
def test_the_csv_sink_never_glues_onto_a_broken_file(invoke, tmp_path, spec, contents, why):
    from archprobe.bench.throughput import RESULT_FIELDS

    path = tmp_path / "rows.csv"
    path.write_text(contents.replace("HEADER", ",".join(RESULT_FIELDS)))
    before = path.read_bytes()
    code, _, err = invoke("throughput", spec("tiny"), "--input-size", "8", "-b", "2", *FAST, "-o", path)
    assert code == ExitCode.USAGE
    assert why in one_error_line(err)
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


# --- 8. and 9. finite, sane numbers; bad input is a usage error ---------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["throughput", "--min-time", "nan"],
        ["throughput", "--min-time", "inf"],
        ["throughput", "--min-time", "-1"],
        ["throughput", "--warmup-time", "inf"],
        ["throughput", "--warmup-time", "nan"],
        ["throughput", "--min-iters", "0"],
        ["throughput", "--warmup", "1000000000"],
        ["throughput", "--threads", "100000"],
        ["throughput", "-b", ","],
        ["throughput", "-b", ""],
        ["throughput", "-b", "0"],
        ["throughput", "-b", "99999999999999999999"],
        ["params", "-b", "99999999999999999999"],
        ["min-input", "--max-size", "nan"],
        ["min-input", "--max-size", "0"],
        ["report", "--throughput", "--min-time", "nan"],
        ["params", "-o", ""],
        ["throughput", "-o", ""],
        ["report", "-o", ""],
        ["report", "--device", "tpu"],
        ["report", "--device", "cpu"],  # throughput-only options without --throughput
        ["report", "--min-time", "1"],
    ],
    ids=lambda args: " ".join(args) or "empty",
)
def test_bad_numbers_and_options_are_usage_errors_before_any_work(invoke, tmp_path, spec, args):
    command, *options = args
    code, out, err = invoke(command, spec("build", "printing.py"), *options)
    assert code == ExitCode.USAGE
    line = one_error_line(err)
    assert line.startswith("error: ") and "Traceback" not in line
    assert "max-iters" not in line  # no option of that name exists
    assert "noise" not in err and out == ""  # the model was never even imported
    assert list(tmp_path.iterdir()) == []


def test_shapes_takes_many_models_as_every_command_does(invoke):
    from archprobe.zoo.resolution import expand

    code, out, err = invoke("shapes", "resnet*", "lenet", "--exclude", "resnet50*", "--depth", "1", "-f", "json")
    assert code == 0, err
    rows = json.loads(out)
    models = list(dict.fromkeys(row["model"] for row in rows))
    assert models == [*expand(["resnet*"], ["resnet50*"]), "lenet"] and len(models) >= 3
    for model in models:  # each model's rows are those it gets alone
        code, alone, _ = invoke("shapes", model, "--depth", "1", "-f", "json")
        assert json.loads(alone) == [row for row in rows if row["model"] == model]
    code, out, _ = invoke("shapes", "lenet", "nin-d2l", "--depth", "0")
    assert "lenet total: 44,426 params" in out and "nin-d2l total: " in out


def test_the_library_rejects_nan_and_caps_every_loop():
    from archprobe.bench.throughput import ThroughputConfig
    from archprobe.runtime.timing import HostTimer, run_timed

    with pytest.raises(UsageError, match="min_time"):
        ThroughputConfig(min_time=math.nan)
    with pytest.raises(UsageError, match="warmup_time"):
        ThroughputConfig(warmup_time=math.inf)
    ticks = iter(range(10**6))
    clock = lambda: float(next(ticks))  # noqa: E731 - one second per reading
    calls = []
    times, warm = run_timed(lambda: calls.append(1), HostTimer(clock), warmup=0, warmup_time=math.inf,
                            min_iters=1, min_time=math.inf, max_iters=50, clock=clock)
    assert warm == 50 and len(times) == 50 and len(calls) == 100


# --- 10. unwritable outputs fail before the work ----------------------------------------------------


@pytest.fixture
def unwritable(tmp_path) -> Path:
    """A directory files cannot be created in: read-only for a normal user; for root (who
    ignores permission bits) a path under a regular file."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        return locked
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return blocker


@pytest.mark.parametrize("command,extra", [("throughput", FAST), ("report", ["--throughput", "--device", "cpu"])])
def test_an_unwritable_output_fails_before_any_work(invoke, unwritable, spec, command, extra):
    target = unwritable / ("rows.json" if command == "throughput" else "report")
    code, out, err = invoke(command, spec("build", "printing.py"), *extra, "-o", target)
    assert code == ExitCode.USAGE
    line = one_error_line(err)
    assert "cannot" in line and "noise" not in err  # refused before the model was imported
    assert not target.exists()


# --- 11. SIGTERM is Ctrl-C: rows kept, no temp file left, exit 143 --------------------------------------


@pytest.mark.parametrize("suffix", ["csv", "json"])
def test_sigterm_keeps_the_rows_and_leaves_no_temp_file(tmp_path, spec, suffix):
    out = tmp_path / f"rows.{suffix}"
    args = ["throughput", spec("tiny"), "--input-size", "8", "-b", "1,2,3,4,5,6,7,8", *FAST, "--min-time", "0.3",
            "-o", str(out)]
    process = subprocess.Popen([sys.executable, "-m", "archprobe", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    def first_row_written() -> bool:  # a CSV gets its header first
        return out.exists() and out.read_text().count("\n") >= (2 if suffix == "csv" else 1)

    deadline = time.monotonic() + 60
    while not first_row_written() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.1)  # land in the middle of the next row (or of its write)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == ExitCode.TERMINATED, stderr
    line = one_error_line(stderr)
    assert line.startswith("terminated after ") and line.endswith(f"of 8 rows; they are in {out}")
    kept = int(line.split()[2])
    if suffix == "csv":
        assert out.read_text().endswith("\n")
        rows = list(csv.DictReader(out.open(newline="")))
    else:
        rows = json.loads(out.read_text())
    assert 1 <= len(rows) == kept < 8 and all(r["status"] == "ok" for r in rows)
    assert leftovers(tmp_path) == [] and stdout == ""


def _signal_during_fsync(monkeypatch):
    """SIGTERM arrives while a file is being synced to disk."""
    real_fsync = os.fsync

    def fsync_under_sigterm(fd):
        os.kill(os.getpid(), signal.SIGTERM)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_under_sigterm)


def test_a_signal_during_a_file_write_waits_until_it_is_whole(tmp_path, monkeypatch):
    from archprobe.plumbing.files import write_atomic
    from archprobe.plumbing.signals import handling_signals

    target = tmp_path / "out.json"
    target.write_text("old\n")
    _signal_during_fsync(monkeypatch)
    with handling_signals(), pytest.raises(Interrupted) as info:
        write_atomic(target, "new\n")
    assert info.value.exit_code == ExitCode.TERMINATED
    assert target.read_text() == "new\n" and leftovers(tmp_path) == []


def test_a_signal_during_a_row_append_waits_until_the_row_is_whole(tmp_path, monkeypatch):
    from archprobe.plumbing.signals import handling_signals
    from archprobe.runtime.sink import CsvSink

    path = tmp_path / "rows.csv"
    with CsvSink(path, ["a", "b"]) as sink:
        _signal_during_fsync(monkeypatch)
        with handling_signals(), pytest.raises(Interrupted):
            sink.write({"a": 1, "b": 2})
    assert path.read_text() == "a,b\n1,2\n"


# --- 12. and 13. streams, encodings and the smaller ones ---------------------------------------------


def test_an_ascii_terminal_gets_ascii(invoke, monkeypatch, spec):
    ascii_stdout = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", ascii_stdout)
    code, _, err = invoke("min-input", spec("tiny"), "--input-size", "3x8x8")
    assert code == 0, err
    ascii_stdout.flush()
    text = ascii_stdout.buffer.getvalue().decode("ascii")
    assert " 3-4096+ " in text


def test_a_closed_stdout_is_a_one_line_error_before_any_work(invoke, monkeypatch, spec):
    monkeypatch.setattr(sys, "stdout", None)
    code, _, err = invoke("params", spec("build", "printing.py"))
    assert code == ExitCode.USAGE
    assert one_error_line(err) == "error: --output: stdout is closed; give a file to write to"


def test_a_python_file_without_factory_says_to_add_it(invoke, files):
    code, _, err = invoke("params", files / "models.py")
    assert code == ExitCode.USAGE
    assert "add :factory" in one_error_line(err)


def test_the_same_model_in_two_spellings_is_one_row(invoke):
    code, out, err = invoke("params", "alexnet", "ALEXNET", "-f", "json")
    assert code == 0, err
    assert [row["model"] for row in json.loads(out)] == ["alexnet"]


@pytest.mark.parametrize("args, flag", [
    (["train", "lenet", "--dataset", "fake", "--lr", "inf"], "--lr"),
    (["train", "lenet", "--dataset", "fake", "--momentum", "nan"], "--momentum"),
    (["train", "lenet", "--dataset", "fake", "--weight-decay", "inf"], "--weight-decay"),
    (["train", "lenet", "--dataset", "fake", "--seed", str(2**64)], "--seed"),
    (["train", "lenet", "--dataset", "fake", "-b", "100000000000000000000"], "--batch-size"),
    (["memory", "lenet", "--device", "cpu", "--fit", "1e30TiB"], "--fit"),
])
def test_numbers_no_run_can_use_are_usage_errors_up_front(invoke, args, flag):
    code, out, err = invoke(*args)
    assert code == ExitCode.USAGE, err
    assert err.count("\n") == 1 and flag in err and "Traceback" not in err and out == ""


def test_recipe_numbers_are_checked_in_the_api_too():
    from archprobe.training.recipes import default_recipe, with_overrides
    from archprobe.zoo import resolve

    recipe = default_recipe(resolve("lenet"))
    for name, value in [("lr", math.inf), ("momentum", math.nan), ("weight_decay", math.inf), ("seed", 2**64)]:
        with pytest.raises(UsageError) as info:
            with_overrides(recipe, **{name: value})
        assert info.value.param == name
    assert with_overrides(recipe, seed=2**64 - 1).seed == 2**64 - 1


def test_min_input_of_a_forward_that_raises_at_every_size_names_the_model_s_error(invoke, tmp_path):
    path = tmp_path / "typo.py"
    path.write_text("from torch import nn\n\n\nclass Typo(nn.Module):\n    def __init__(self):\n"
                    "        super().__init__()\n        self.conv = nn.Conv2d(3, 4, 3)\n\n"
                    "    def forward(self, x):\n        raise KeyError('typo')\n\n\n"
                    "def build():\n    return Typo()\n")
    code, out, err = invoke("min-input", f"{path}:build", "--input-size", "3x32x32", "--max-size", "64")
    assert code == ExitCode.FAILURE, err
    assert err.count("\n") == 1 and "KeyError" in err and "'typo'" in err and "fails at every size" in err
    code, _, err = invoke("params", f"{path}:build", "--input-size", "3x32x32")
    assert code == ExitCode.FAILURE and "KeyError" in err  # the same verdict as params


def test_min_input_of_a_model_no_size_fits_still_answers_none(invoke, tmp_path):
    path = tmp_path / "wide.py"  # a Linear after Flatten that only a 100x100 input feeds
    path.write_text("from torch import nn\n\n\ndef build():\n"
                    "    return nn.Sequential(nn.Conv2d(3, 1, 1), nn.Flatten(), nn.Linear(10000, 2))\n")
    code, out, err = invoke("min-input", f"{path}:build", "--input-size", "3x32x32", "--max-size", "64", "-f", "json")
    assert code == 0, err
    assert json.loads(out)[0]["valid"] == []


@pytest.mark.parametrize("args", [
    ["throughput", "lenet", "--device", "cpu", "--nproc", str((os.cpu_count() or 1) + 1)],
    ["throughput", "lenet", "--device", "cpu", "--nproc", "1000"],
    ["train", "lenet", "--dataset", "fake", "--device", "cpu", "--nproc", str((os.cpu_count() or 1) + 1)],
    ["train", "lenet", "--dataset", "fake", "--threads", "1000"],
    ["train", "lenet", "--dataset", "fake", "--threads", "100000"],
])
def test_ranks_and_threads_are_bounded_by_the_cpus_before_anything_starts(invoke, args):
    started = threading.active_count()
    code, out, err = invoke(*args)
    assert code == ExitCode.USAGE, err
    assert err.count("\n") == 1 and out == ""
    assert threading.active_count() <= started + 1  # nothing was launched


def test_ranks_times_threads_per_rank_may_not_exceed_the_cpus():
    from archprobe.runtime.distributed import check_nprocs

    check_nprocs([1, 2], "cpu", threads=2, cpus=4)
    with pytest.raises(UsageError, match="3 ranks x 2 threads need 6 CPUs; this machine has 4") as info:
        check_nprocs([1, 3], "cpu", threads=2, cpus=4)
    assert info.value.param == "nproc"


# --- model code that changes the process ------------------------------------------------------

MESSY_FACTORIES = '''
import atexit, os, signal, threading, time
import torch
from torch import nn


def messy():
    os.makedirs("elsewhere", exist_ok=True)
    os.chdir("elsewhere")
    torch.set_default_dtype(torch.float64)
    torch.set_grad_enabled(False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.write(1, b"written to file descriptor 1\\n")
    threading.Thread(target=time.sleep, args=(3600,)).start()  # never joined
    atexit.register(print, "printed at exit")
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())


def plain():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
'''


def test_model_code_does_not_change_the_process_for_what_follows(tmp_path, monkeypatch):
    import torch

    from archprobe.user_code import running_user_code

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    handler = signal.getsignal(signal.SIGINT)
    with running_user_code("building a model"):
        os.chdir("sub")
        torch.set_default_dtype(torch.float64)
        torch.set_grad_enabled(False)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    assert Path.cwd() == tmp_path
    assert torch.get_default_dtype() == torch.float32 and torch.is_grad_enabled()
    assert signal.getsignal(signal.SIGINT) is handler


def test_model_code_cannot_move_outputs_corrupt_stdout_or_hang_the_exit(tmp_path):
    (tmp_path / "messy.py").write_text(MESSY_FACTORIES)
    command = [sys.executable, "-m", "archprobe", "params", "messy.py:messy", "messy.py:plain",
               "--input-size", "3x8x8", "-f", "json"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)  # nothing but archprobe's JSON on stdout
    # the first model is float64 (built so); the one after it is not measured in its default dtype
    assert [(r["model"], r["dtype"]) for r in rows] == [("messy.py:messy", "float64"), ("messy.py:plain", "float32")]
    assert "written to file descriptor 1" in done.stderr  # an atexit hook is not run: the thread is not waited for
    # a relative -o is the caller's, however the model code moved the working directory
    done = subprocess.run([*command[:-2], "-o", "rows.json"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "rows.json").exists() and not (tmp_path / "elsewhere" / "rows.json").exists()


@pytest.mark.parametrize("args", [["params", "lenet"],
                                  ["train", "lenet", "--dataset", "fake", "-d", "cpu", "--epochs", "1",
                                   "--limit-train", "64", "--limit-test", "32", "--threads", "1"]])
def test_a_closed_stdout_is_refused_before_any_work_in_one_line(tmp_path, args):
    # started with descriptor 1 closed (`archprobe ... >&-`): one line, exit 2, no traceback
    result = subprocess.run([sys.executable, "-m", "archprobe", *args], stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, preexec_fn=lambda: os.close(1), timeout=120)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert result.stderr.count("\n") == 1 and "stdout is closed" in result.stderr
    assert "epoch" not in result.stderr
