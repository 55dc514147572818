"""`tuner dashboard`: optuna-dashboard on the study storage, with trials' artifacts."""
from __future__ import annotations

from pathlib import Path

import typer

from tuner.cli._app import StorageOption, app, console, err_console, user_errors


@app.command("dashboard")
@user_errors
def dashboard(
    storage: str = StorageOption,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; 0.0.0.0 exposes it to the network."),
    port: int = typer.Option(8080, "--port"),
    artifacts: Path | None = typer.Option(None, "--artifacts", help="Artifact directory (server logs, raw"
                                             " per-request records; default: the one the studies recorded, else"
                                             " tuner-runs/artifacts)."),
) -> None:
    """Open optuna-dashboard on the study storage: the Pareto front with the objective names, a readable note on
    every trial (command, outcome, levels, why it was penalized), the report's plots, and each trial's server log
    and raw request records as artifacts. Bound to 127.0.0.1 unless --host says otherwise."""
    import optuna
    import optuna.artifacts
    import optuna_dashboard

    from tuner.study.records import StudyRecord
    from tuner.study.storage import check_storage_url, open_storage

    check_storage_url(storage, "--storage", "")
    from tuner.report import publish_to_dashboard

    rdb = open_storage(storage)
    recorded = []
    for summary in optuna.get_all_study_summaries(rdb, include_best_trial=False):
        publish_to_dashboard(optuna.load_study(study_name=summary.study_name, storage=rdb))
        recorded.append(StudyRecord.of(summary).artifact_dir)
    # optuna-dashboard serves one artifact store; studies of one storage share their runs_dir in practice.
    artifacts = artifacts or next((Path(p) for p in recorded if p and Path(p).is_dir()), Path("tuner-runs/artifacts"))
    store = optuna.artifacts.FileSystemArtifactStore(str(artifacts)) if artifacts.is_dir() else None
    if store is None:
        err_console.print(f"no artifact directory at {artifacts}: server logs will not be shown (--artifacts DIR)")
    console.print(f"optuna-dashboard on http://{host}:{port} (Ctrl-C to stop)")
    optuna_dashboard.run_server(rdb, host=host, port=port, artifact_store=store)
