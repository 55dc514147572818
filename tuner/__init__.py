"""tuner: finds the best vLLM serving configuration for a model on given hardware.

Data flows through one module per stage:

    spec            study file -> StudySpec              (what to tune, how to load, where to store)
    search_space    search-space file -> SearchSpace     (parameters, conditions, targets)
    server_config   sampled params -> ServerConfig       (argv + env, never a shell string)
    server_process  ServerConfig -> a running vLLM       (process group, readiness, teardown)
    failures        exit code + log -> FailureClass
    loadgen         a server URL + LoadSpec -> LevelResult per load level
    worker          ServerConfig + LoadSpec -> TrialResult  (runs inside a Ray task)
    scoring         TrialResult -> Score                 (throughput, stability, constraint)
    study           the Optuna ask/tell loop over Ray workers
    export          a stored trial -> `vllm serve --config` YAML (+ env file)
    report          status and Pareto tables; progress: the live display of a running study
    cli             the `tuner` command; maps errors to one-line messages and exit codes

Around that loop:
    server_metrics  the server's own /metrics counters, to check the client against
    hardware        the accelerator catalog (FLOP/s, HBM) ; plausibility: measured vs compute ceiling
    memory_fit      weights / KV-cache / fit estimates from config.json ; plan: `tuner study plan` dry runs
    startup         load / compile / total startup times and compile-cache state from a server log
    matrix_report   concurrency x input x output matrices and the seed-versus-best summary
    bench           `tuner bench`: the load generator against any running server
    _reaper, _ray_guard   process hygiene: servers die with their worker, Ray's agents with the driver
"""

__version__ = "0.1.0"
