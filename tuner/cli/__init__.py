"""The `tuner` command: every typer command lives in this package, and nowhere else.

    _app        the app, its consoles, and `user_errors` (tuner's exceptions -> one line and an exit code)
    study       tuner study start | status | pareto | export | plan | matrix | summary
    bench       tuner bench: the load generator against any running server
    dashboard   tuner dashboard: optuna-dashboard on the study storage
    compare     tuner compare: an A/B verdict with confidence between two configs
"""
from tuner.cli import bench as _bench  # noqa: F401  (registers its command)
from tuner.cli import compare as _compare  # noqa: F401  (registers its command)
from tuner.cli import dashboard as _dashboard  # noqa: F401  (registers its command)
from tuner.cli import study as _study  # noqa: F401  (registers its commands)
from tuner.cli._app import app, user_errors

__all__ = ["app", "user_errors"]
