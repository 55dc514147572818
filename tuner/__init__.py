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
    report          status and Pareto tables
    cli             the `tuner` command; maps errors to one-line messages and exit codes
"""

__version__ = "0.1.0"
