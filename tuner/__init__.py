"""tuner: finds the best vLLM serving configuration for a model on given hardware.

A trial's data flows through the stages in this order:

    spec            study file -> StudySpec                  (what to tune, how to load, where to store)
    search_space    search-space file -> SearchSpace         (parameters, conditions, targets, rules)
    prelaunch       rules + memory-fit estimate: launch this config or record it as predicted-penalized
    failure_rules   what a measured failure rules out before launch (kv_capacity: longer context, no more memory)
    server/         the server stage: config (params -> ServerConfig: argv + env), process (a running vLLM in its
                    own process group), _reaper, failures (exit code + log -> FailureClass), startup (phases)
    loadgen/        the load generator: a server URL + workload -> LevelResult per load level, checked against
                    the server's own /metrics counters (server_counters)
    traffic         the study's dataset / shapes, SLOs and hardware -> SweepPlan (resolved once on the driver)
    worker          ServerConfig + SweepPlan -> TrialResult  (one launch on one slice; runs inside a Ray task)
    objectives      Goals (objectives, SLOs) and the operating point of a launch's levels
    scoring         TrialResult -> Score                     (outcome, values, constraints, stability of one launch)
    confirmation    a config's launches -> ConfigSummary (medians, spread, stability); the front
    results         the contracts: LevelResult, TrialResult
    trial_record    what a study stores per trial and how every reader gets it back (TrialRecord)
    study/          the loop: Optuna bookkeeping (_bookkeeping), Ray executor (_executor), the runner (_runner)
    replay          a recorded response surface answering trials instead of servers (the search benchmark)
    storage         Optuna storage (SQLite, PostgreSQL)
    export          a confirmed config -> `vllm serve --config` YAML (+ env file)
    report          status and front tables; progress: the live display of a running study
    cli/            every `tuner` command; the only place errors become one-line messages and exit codes

Knowledge the stages share:
    hardware        the accelerator catalog (one Hardware type: chips x count, memory, FLOP/s)
    memory_fit      weights / KV-cache / fit estimates from config.json (the one parameter counter)
    plausibility    a measured throughput against the compute ceiling
    plan            what `tuner study plan` prints; matrix_report: concurrency x input x output matrices
    bench           `tuner bench` as a library: spec -> plan of levels -> documents
    _ray_guard      Ray's agents end with a killed driver
"""

__version__ = "0.1.0"
