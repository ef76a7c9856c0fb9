"""`archprobe params alexnet vgg16 nin googlenet` vs the obvious peer script (CPU build + fvcore).

Both run as cold processes, alternating, ``--repeats`` times each; the medians are compared.
Also times the whole zoo (``archprobe params '*'``) and the floor: ``import torch, torchvision``.

    .venv/bin/python benchmarks/bench_params.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procstat import measure  # noqa: E402

PY = sys.executable
ARCHPROBE = [PY, "-m", "archprobe"]
SEED = ["alexnet", "vgg16", "nin", "googlenet"]
CASES = {
    "floor: import torch, torchvision": [PY, "-c", "import torch, torchvision"],
    "archprobe params (seed set)": [*ARCHPROBE, "params", *SEED],
    "peer: CPU build + fvcore": [PY, str(Path(__file__).with_name("peer_fvcore_params.py"))],
    "archprobe params '*' (whole zoo)": [*ARCHPROBE, "params", "*"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list] = {name: [] for name in CASES}
    for _ in range(args.repeats):
        for name, cmd in CASES.items():
            runs[name].append(measure(cmd))

    def med(name, attr):
        return statistics.median(getattr(r, attr) for r in runs[name])

    print(f"{'case':36s} {'wall s':>8s} {'peak RSS MB':>12s} {'peak anon MB':>13s}   (median of {args.repeats})")
    for name in CASES:
        print(f"{name:36s} {med(name, 'wall_s'):8.2f} {med(name, 'peak_rss_mb'):12.0f} {med(name, 'peak_anon_mb'):13.0f}")
    ours, peer, floor = "archprobe params (seed set)", "peer: CPU build + fvcore", "floor: import torch, torchvision"
    print()
    print(f"speed-up, wall clock:         {med(peer, 'wall_s') / med(ours, 'wall_s'):.2f}x  (target >= 4x)")
    print(f"peak RSS, archprobe/peer:     {med(ours, 'peak_rss_mb') / med(peer, 'peak_rss_mb'):.2f}  (target <= 0.33)")
    print(f"peak anon, archprobe/peer:    {med(ours, 'peak_anon_mb') / med(peer, 'peak_anon_mb'):.2f}")
    print(f"archprobe above the import floor: {med(ours, 'wall_s') - med(floor, 'wall_s'):.2f} s, "
          f"{med(ours, 'peak_rss_mb') - med(floor, 'peak_rss_mb'):.0f} MB RSS; "
          f"peer above it: {med(peer, 'wall_s') - med(floor, 'wall_s'):.2f} s, "
          f"{med(peer, 'peak_rss_mb') - med(floor, 'peak_rss_mb'):.0f} MB RSS")


if __name__ == "__main__":
    main()
