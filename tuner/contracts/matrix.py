"""A matrix point (concurrency x input length x output length) and the grid of them: the contract between the
matrix's planners (`tuner study matrix`, `tuner bench`) and the load generator that measures each point. Kept
apart from the load generator so that reading a matrix file, and `tuner --help`, do not import it."""
from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class MatrixPoint:
    concurrency: int
    input_len: int
    output_len: int


def grid(concurrency: Iterable[int], input_lens: Iterable[int], output_lens: Iterable[int]) -> list[MatrixPoint]:
    """Every combination, ordered by input, then output length, then concurrency (low load first per shape)."""
    return [MatrixPoint(c, i, o) for i, o, c in itertools.product(input_lens, output_lens, concurrency)]
