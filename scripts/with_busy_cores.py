"""Runs a command beside N CPU-bound processes, as on a shared CI host whose other jobs take the cores.

    python scripts/with_busy_cores.py 2 -- .venv/bin/python -m pytest tests/study/test_faults.py

The busy processes spin at niceness 0 (as another job would); they are started before the command and ended by
their own process ids afterwards, whatever the command's outcome. Exit status: the command's.
"""
from __future__ import annotations

import subprocess
import sys

SPIN = "while True:\n    pass\n"


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[2] != "--":
        print("usage: with_busy_cores.py N -- COMMAND ...", file=sys.stderr)
        return 2
    busy = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(int(argv[1]))]
    try:
        print(f"running beside {len(busy)} CPU-bound processes (pids {', '.join(str(p.pid) for p in busy)})",
              flush=True)
        return subprocess.call(argv[3:])
    finally:
        for process in busy:
            process.kill()
            process.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
