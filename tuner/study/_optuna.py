"""Every use of a private Optuna name in tuner, in one place, each with the reason no public API serves.

Optuna's public API covers asking, telling, attributes and queues by trial number. What tuner needs beyond that:
  - attributes on a trial another process left RUNNING, and its heartbeat (only the storage API, by storage id);
  - which queued trial holds which enqueued parameters (Optuna keeps them as the `fixed_params` system attribute);
  - the heartbeats of RUNNING trials (RDBStorage has no public reader);
  - a hypervolume over plain loss vectors (the public `optuna.visualization` one needs a Study);
  - an `optuna.Trial` for a finished trial, which optuna-dashboard's notes take.
When Optuna grows a public spelling for one of these, this is the only module to change.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import optuna
import sqlalchemy
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState


def storage_of(study: optuna.Study) -> BaseStorage:
    """The study's storage: `Study` has no public accessor, and the storage API is the one that writes to a trial
    by its id (a trial another driver left RUNNING) and renews heartbeats."""
    return study._storage


def rdb_of(study: optuna.Study) -> RDBStorage | None:
    """The study's RDB storage (Optuna wraps it in a cache), or None for any other storage."""
    storage = storage_of(study)
    storage = getattr(storage, "_backend", storage)
    return storage if isinstance(storage, RDBStorage) else None


def trial_id_of(trial: FrozenTrial | optuna.Trial) -> int:
    """The storage id (not the number) of a trial: the storage API and heartbeats take it."""
    return trial._trial_id


def study_id_of(study: optuna.Study) -> int:
    return study._study_id


def enqueued_params(trial: FrozenTrial) -> dict[str, Any]:
    """The parameters a trial was enqueued with (before sampling, which fills only those the space asks for):
    `Study.enqueue_trial` keeps them as the `fixed_params` system attribute."""
    return dict(trial.system_attrs.get("fixed_params") or trial.params)


def running_heartbeats(rdb: RDBStorage, study: optuna.Study) -> tuple[datetime | str | None, list[tuple[int, Any]]]:
    """The database's now and (trial id, heartbeat) of every RUNNING trial of the study that has one, from
    Optuna's own schema: RDBStorage has no public reader of heartbeats."""
    from optuna.storages._rdb import models

    session = rdb.scoped_session()
    try:
        now = session.execute(sqlalchemy.func.now()).scalar()
        rows = (session.query(models.TrialHeartbeatModel.trial_id, models.TrialHeartbeatModel.heartbeat)
                .join(models.TrialModel, models.TrialModel.trial_id == models.TrialHeartbeatModel.trial_id)
                .filter(models.TrialModel.study_id == study_id_of(study),
                        models.TrialModel.state == TrialState.RUNNING)
                .all())
        session.commit()
    finally:
        session.close()
    return now, [(trial_id, stamp) for trial_id, stamp in rows]


def hypervolume(losses: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """The hypervolume of loss vectors (minimized) against a reference point: Optuna's own implementation; its
    public wrapper takes a Study, not vectors."""
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(np.asarray(losses, dtype=float), np.asarray(reference, dtype=float)))


def live_trial(study: optuna.Study, trial: FrozenTrial) -> optuna.Trial:
    """An `optuna.Trial` for a finished trial: optuna-dashboard's notes are saved on a Trial, not a number."""
    return optuna.Trial(study, trial_id_of(trial))
