"""Writes studies/traffic/quickstart-chat.jsonl: the quickstart's stand-in for a user's own traffic.

Input and output token lengths with the long tail chat traffic has (log-normal, clipped to what the tiny CPU model
serves in seconds), one JSON object per line in the format tuner's dataset loader reads ({"input_len", "output_len"}).
Deterministic (seed 0): run it again and the file is byte-identical.

    python scripts/make_traffic.py [OUT]
"""
from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

ENTRIES = 200


def lengths(rng: random.Random) -> tuple[int, int]:
    input_len = int(min(512, max(16, rng.lognormvariate(math.log(120), 0.8))))
    output_len = int(min(384, max(16, rng.lognormvariate(math.log(140), 0.6))))
    return input_len, output_len


def main(out: Path) -> None:
    rng = random.Random(0)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        for _ in range(ENTRIES):
            i, o = lengths(rng)
            f.write(json.dumps({"input_len": i, "output_len": o}) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "studies/traffic/quickstart-chat.jsonl")
