"""How fast `bench validate` and `bench plan` answer, and that they import no torch.

Each command runs in a fresh interpreter (as a user would run it), several times; the script prints the
median wall time and the heavy libraries each one imported. Target: under 1 s, no torch.

    python benchmarks/cli_latency.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightning", "mlflow", "optuna", "timm", "datasets", "pandas", "matplotlib")
PROBE = f"""
HEAVY = {HEAVY!r}
import json, sys, contextlib, io
from bench.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
print(json.dumps({{"code": code, "heavy": [m for m in HEAVY if m in sys.modules]}}))
"""


def run(args: list[str]) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=REPO, capture_output=True, text=True, check=True
    )
    return time.perf_counter() - started, json.loads(done.stdout.splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    suites = [str(s.relative_to(REPO)) for s in sorted((REPO / "suites").glob("*.yaml"))]
    commands = {
        f"bench validate ({len(suites)} shipped suites)": ["validate", *suites],
        "bench plan suites/lm.yaml": ["plan", "suites/lm.yaml"],
        "bench ls": ["ls"],
    }
    for name, argv in commands.items():
        times, info = [], {}
        for _ in range(args.repeats):
            seconds, info = run(argv)
            times.append(seconds)
        print(f"{name:45s} median {statistics.median(times):.2f} s over {args.repeats} runs "
              f"(min {min(times):.2f}), exit {info['code']}, heavy imports: {info['heavy'] or 'none'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
