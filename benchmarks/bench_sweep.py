"""The atlas's speed: `archprobe sweep` against running the same analyses directly.

Three measurements, each in fresh processes:

1. the whole torchvision classification set (``'tv:*'``) through params, min-input and memory
   with ``--jobs 2``: wall clock, cells, statuses, the cells' own seconds;
2. per-cell overhead: a small set of models x the same analyses as ``sweep --jobs 1`` against one
   plain script calling ``ap.count``, ``ap.min_input`` and ``ap.memory`` for them in one process
   (both pay the import of torch; the sweep also starts its worker); aim <= 10%;
3. a resumed sweep with everything stored: the same command again (aim <= 2 s).

    .venv/bin/python benchmarks/bench_sweep.py [--repeats 3] [--skip-full]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
ARCHPROBE = [PY, "-m", "archprobe"]
ANALYSES = "params,min-input,memory"
SMALL = ["tv:squeezenet1_0", "tv:squeezenet1_1", "tv:mobilenet_v2", "tv:mobilenet_v3_small",
         "tv:mobilenet_v3_large", "tv:shufflenet_v2_x0_5", "tv:shufflenet_v2_x1_0", "tv:mnasnet0_5", "tv:resnet18"]
DIRECT = """
import archprobe as ap
for model in {models!r}:
    for run in (ap.count, ap.min_input):
        try:
            run(model)
        except ap.ArchprobeError:
            pass
    try:
        ap.memory(model, batch_size=32, device="cpu")
    except ap.ArchprobeError:
        pass
"""


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def store_summary(directory: Path) -> tuple[int, dict[str, int], float]:
    with sqlite3.connect(directory / "atlas.sqlite") as db:
        rows = db.execute("SELECT status, seconds FROM cells").fetchall()
    statuses: dict[str, int] = {}
    for status, _ in rows:
        statuses[status] = statuses.get(status, 0) + 1
    return len(rows), statuses, sum(s for _, s in rows)


def load() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-full", action="store_true", help="leave out the whole-'tv:*' sweep")
    parser.add_argument("--full-only", action="store_true", help="only the whole-'tv:*' sweep and its resume")
    parser.add_argument("--jobs", type=int, default=2, help="the whole sweep's --jobs")
    args = parser.parse_args()
    print(f"load average before: {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_full:
            full = Path(tmp) / "full"
            command = [*ARCHPROBE, "sweep", "tv:*", "-a", ANALYSES, "-o", str(full), "--jobs", str(args.jobs), "-q"]
            wall = timed(command)
            cells, statuses, seconds = store_summary(full)
            print(f"'tv:*' x {ANALYSES}, --jobs {args.jobs}: {wall:.1f} s wall, {cells} cells {json.dumps(statuses)}, "
                  f"cells' own time {seconds:.1f} s (load after: {load()})")
            resumed = [timed(command) for _ in range(args.repeats)]
            slowest = sqlite3.connect(full / "atlas.sqlite").execute(
                "SELECT spec, analysis, status, round(seconds, 1) FROM cells ORDER BY seconds DESC LIMIT 5").fetchall()
            print(f"slowest cells: {slowest}")
            print(f"resumed (everything stored): median {statistics.median(resumed):.2f} s "
                  f"(runs {', '.join(f'{r:.2f}' for r in resumed)}; aim <= 2 s)")

        if args.full_only:
            print(f"load average after: {load()}")
            return
        direct, swept, own = [], [], []
        for i in range(args.repeats):
            direct.append(timed([PY, "-c", DIRECT.format(models=SMALL)]))
            small = Path(tmp) / f"small{i}"
            swept.append(timed([*ARCHPROBE, "sweep", *SMALL, "-a", ANALYSES, "-o", str(small), "--jobs", "1", "-q"]))
            own.append(store_summary(small)[2])
        d, s, o = statistics.median(direct), statistics.median(swept), statistics.median(own)
        cells = len(SMALL) * 3
        print(f"{len(SMALL)} models x {ANALYSES} ({cells} cells), median of {args.repeats}:")
        print(f"  direct script (one process, ap.count/min_input/memory): {d:.2f} s")
        print(f"  sweep --jobs 1 (parent + one worker):                    {s:.2f} s; cells' own time {o:.2f} s")
        print(f"  overhead: {100 * (s - d) / d:+.1f}% of the direct run, {(s - d) / cells * 1000:+.0f} ms per cell "
              f"(aim <= 10%)")
        if args.skip_full:
            resumed = [timed([*ARCHPROBE, "sweep", *SMALL, "-a", ANALYSES, "-o", str(Path(tmp) / "small0"), "-q"])
                       for _ in range(args.repeats)]
            print(f"resumed small sweep: median {statistics.median(resumed):.2f} s (aim <= 2 s)")
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
