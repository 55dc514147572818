"""The load generator: streams requests at a server and measures them like `vllm bench serve` does.

    workload  what each request asks for (prompt, lengths, endpoint)
    sse       incremental SSE parsing of raw bytes
    request   one streaming request -> RequestRecord
    stats     records -> LevelResult (throughput, latency percentiles)
    runner    closed-loop load at one concurrency, with warm-up and server cross-check
"""
from tuner.loadgen.request import RequestRecord
from tuner.loadgen.runner import measure_level, run_level
from tuner.loadgen.workload import Workload, vocab_size_of

__all__ = ["RequestRecord", "Workload", "measure_level", "run_level", "vocab_size_of"]
