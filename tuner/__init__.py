"""tuner: finds the best vLLM serving configuration for a model on given hardware.

A trial's data flows through the packages in this order (each package's docstring lists its modules):

    inputs/     study file -> StudySpec, search-space file -> SearchSpace, traffic -> SweepPlan (validated once);
                a `vllm serve` line -> a new study (tuner study new)
    capacity/   what the slice holds before a launch: hardware catalog, memory fit, pre-launch check, learned
                failure rules, `tuner study plan`; and the compute and decode (bandwidth) ceilings every measured
                level is checked against (roofline)
    server/     params -> ServerConfig (argv + env) -> a running vLLM in its own process group; tuner's calls to
                it (client); exit code + log -> FailureClass; startup phases
    load/       a server URL + workload -> LevelResult per level, like `vllm bench serve`, checked against the
                server's own /metrics; `tuner bench` as a library
    trial/      ServerConfig + SweepPlan -> TrialOutcome: one launch on one slice (inside a Ray task), the server
                watched and judged after every level, always torn down
    scoring/    TrialResult -> Score (outcome, values, constraints, stability); launches -> ConfigSummary; the front
    study/      the loop (prepare, run, open_study): Optuna ask/tell, Ray executor, leases; records: the only code
                that reads or writes what a study stores
    report/     tables, live progress, the HTML / Markdown report, dashboard notes, the exported YAML
    cli/        every `tuner` command; the only place errors become one-line messages and exit codes

Between the stages:
    contracts/  what crosses a boundary: SweepPlan, TrialOutcome, LevelResult, TrialResult, FailureClass, Outcome, LaunchPhase
    errors      every exception tuner raises, drawn as a tree
"""

__version__ = "0.1.0"
