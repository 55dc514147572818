"""tuner: finds the best vLLM serving configuration for a model on given hardware.

A trial's data flows through the packages in this order, bottom floor first; each imports only those below it
(import-linter's layers contract in pyproject.toml, run by `make lint`), and each package's docstring lists its
modules:

    errors      every exception tuner raises, drawn as a tree
    contracts/  the vocabulary every stage shares: LevelResult, TrialResult, FailureClass, Outcome, Goals, the
                hardware catalogue, Sampling, LaunchPhase
    inputs/     study file -> StudySpec, search-space file -> SearchSpace (validated once); a `vllm serve` line
    capacity/   what the slice holds and does: memory fit, learned failure rules, the compute and decode
                (bandwidth) ceilings every measured level is checked against (roofline)
    server/     params -> ServerConfig (argv + env) -> a running vLLM in its own process group; tuner's calls to
                it (client); exit code + log -> FailureClass; startup phases
    load/       a server URL + workload -> LevelResult per level, like `vllm bench serve`, checked against the
                server's own /metrics; `tuner bench` as a library
    scoring/    TrialResult -> Score (outcome, values, constraints, stability); launches -> ConfigSummary
    trial/      LaunchRequest (ServerConfig + SweepPlan) -> TrialOutcome: one launch on one slice (inside a Ray
                task), the server watched and judged after every level, always torn down
    planning/   before a launch, on the driver: traffic -> SweepPlan, the pre-launch check, the launch-time
                estimate, `tuner study plan`, `tuner study new`
    study/      the loop (prepare, run, open_study): Optuna ask/tell over stop rules, Ray executor, leases;
                records: the only code that reads or writes what a study stores; the front
    compare/    `tuner compare`: two configs launched alternately, per-metric verdicts with intervals
    report/     tables, live progress, the HTML / Markdown report, dashboard notes, the exported YAML
    cli/        every `tuner` command; the only place errors become one-line messages and exit codes
"""

__version__ = "0.1.0"
