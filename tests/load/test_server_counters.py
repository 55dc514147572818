"""Parsing the server's Prometheus text and turning two scrapes into counter deltas."""
from __future__ import annotations

from tuner.load.server_counters import counters_between, parse_prometheus

BEFORE = """# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} 100.0
vllm:generation_tokens_total{engine="1",model_name="m"} 50.0
vllm:prompt_tokens_total{engine="0",model_name="m"} 10.0
vllm:prefix_cache_queries_total{model_name="m"} 1000.0
vllm:prefix_cache_hits_total{model_name="m"} 100.0
vllm:kv_cache_usage_perc{model_name="m"} 0.25
vllm:num_requests_running{model_name="m"} NaN
process_cpu_seconds_total 12.0
vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="m"} 3.0
"""
AFTER = BEFORE.replace("} 100.0\n", "} 400.0\n", 1).replace('"m"} 1000.0', '"m"} 2000.0').replace(
    '"m"} 100.0\nvllm:kv', '"m"} 600.0\nvllm:kv') + 'vllm:num_preemptions_total{model_name="m"} 3\n'


def test_sums_label_sets_skips_nan_and_foreign_metrics():
    parsed = parse_prometheus(BEFORE)
    assert parsed["vllm:generation_tokens_total"] == 150.0
    assert "vllm:num_requests_running" not in parsed and "process_cpu_seconds_total" not in parsed
    assert parsed["vllm:kv_cache_usage_perc"] == 0.25


def test_counter_deltas_and_rates():
    counters = counters_between(parse_prometheus(BEFORE), parse_prometheus(AFTER), {"peak_kv_cache_usage": 0.9})
    assert counters.generation_tokens == 300.0 and counters.prompt_tokens == 0.0
    assert counters.preemptions == 3.0  # absent before: counted from zero
    assert counters.prefix_cache_hit_rate == 500.0 / 1000.0
    assert counters.peak_kv_cache_usage == 0.9 and counters.spec_acceptance_rate is None


def test_close_without_end_stops_the_sampler_first():
    # A level that raised never calls end(); close() must not leave the sampler scraping a closed client.
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tuner.load.server_counters import MetricsWatcher

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self):
            body = BEFORE.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    errors = []
    previous_hook = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:
        watcher = MetricsWatcher(f"http://127.0.0.1:{server.server_address[1]}", interval_s=0.01)
        watcher.begin()
        sampler = watcher._thread
        watcher.close()
        assert sampler is not None and not sampler.is_alive()
    finally:
        threading.excepthook = previous_hook
        server.shutdown()
    assert errors == []
