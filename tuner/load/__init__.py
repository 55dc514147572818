"""The load generator: streams requests at a server and measures them like `vllm bench serve` does.

    http      asyncio HTTP/1.1 client: socket bytes -> httptools (llhttp) -> consumer, one timestamp per read;
              closed keep-alive connections never reused, the close/send race retried once
    sse       incremental SSE parsing of raw bytes
    request   one streaming request -> RequestRecord (TTFT, ITL, E2EL, usage; failures kept)
    workload  what each request asks for (exact-length prompts, shared prefix, length ranges, endpoint)
    tokenizer local tokenizer.json or the server's /tokenize, for exact text prompts
    arrivals  open-loop schedules (Poisson, gamma, constant)
    driver    one process's load engine, on callbacks: phases (warm-up, measured), records, retries, aborts
    patterns  closed loop (streams) and open loop (arrival timers, in-flight cap): what to send next
    connections  the connection pool: opened up front in batches, idle ones dropped once closed; close/send race retry
    monitor   the client watching itself (event-loop lag, CPU)
    workers   several client processes started together, raw records merged
    stats     records -> LevelResult (throughput, percentiles from all samples, goodput, queue time)
    checks    client vs server token counts; client saturation
    runner    one measured level: warm-up, /metrics before/after, checks, plausibility, abort hook
    server_counters  the server's own /metrics counters over a level, to check the client against
    matrix    concurrency x input x output points against one running server
"""
from tuner.load.request import RequestRecord
from tuner.load.runner import LevelOptions, LoadPattern, measure_level
from tuner.load.stats import SLO
from tuner.load.workload import Workload, vocab_size_of

__all__ = [
           "SLO",
           "LevelOptions",
           "LoadPattern",
           "RequestRecord",
           "Workload",
           "measure_level",
           "vocab_size_of",
]
