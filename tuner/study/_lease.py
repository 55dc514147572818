"""Who holds a RUNNING trial: a lease the driver that launched it renews, so several drivers can share one study and
a driver that is gone (killed, its machine lost) has its trials re-queued once the lease expires, and not before.

The lease is Optuna's own heartbeat record (RDB storage, table `trial_heartbeats`): one row per trial, stamped with
the database's clock, so drivers on machines with different clocks agree on its age. Optuna renews it only inside
`Study.optimize`; tuner's loop uses ask/tell, so a thread here renews the trials this driver holds every
`heartbeat_s`. A RUNNING trial whose stamp is older than `grace_s` has expired. One without a stamp (its driver died
between asking for it and launching it, or a storage written before leases) gets one from the first driver that
sees it: its grace starts then.

Storages other than RDB (Optuna's in-memory storage) live in one process: every RUNNING trial this driver does not
hold is left over from an earlier run in it, so it has expired.
"""
from __future__ import annotations

import threading
from datetime import datetime, timedelta

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from tuner.inputs.spec import LeaseSpec
from tuner.study._optuna import rdb_of, running_heartbeats, trial_id_of


class Lease:
    """This driver's hold on the trials it runs. Use as a context manager: it renews their heartbeats in a thread
    until the driver exits (a killed driver stops renewing, which is the point)."""

    def __init__(self, optuna_study: optuna.Study, terms: LeaseSpec) -> None:
        self.study = optuna_study
        self.terms = terms
        self._rdb = rdb_of(optuna_study)
        self._held: dict[int, int] = {}  # trial number -> storage trial id
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_until_stopped, name="tuner-lease", daemon=True)
        self.renew_errors = 0  # failed renewals (the database unreachable for a moment); the grace covers a few

    def __enter__(self) -> Lease:
        if self._rdb is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.terms.heartbeat_s + 30)

    # -- holding ----------------------------------------------------------------------------------------------
    def hold(self, trial: optuna.Trial | FrozenTrial) -> None:
        """Renew `trial` from now on (and once at once: its grace starts now)."""
        trial_id = trial_id_of(trial)
        with self._lock:
            self._held[trial.number] = trial_id
        self._beat(trial_id)

    def release(self, number: int) -> None:
        with self._lock:
            self._held.pop(number, None)

    @property
    def held(self) -> set[int]:
        with self._lock:
            return set(self._held)

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.terms.heartbeat_s):
            with self._lock:
                ids = list(self._held.values())
            for trial_id in ids:
                self._beat(trial_id)

    def _beat(self, trial_id: int) -> None:
        if self._rdb is None:
            return
        try:
            self._rdb.record_heartbeat(trial_id)
        except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError):
            # A database blip: the next beat renews it. Only `grace_s` without any renewal loses the trial.
            self.renew_errors += 1

    # -- expiring ---------------------------------------------------------------------------------------------
    def expired(self) -> list[FrozenTrial]:
        """RUNNING trials of the study whose driver is gone: not held here, lease older than `grace_s`."""
        held = self.held
        running = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                   if t.number not in held]
        if self._rdb is None or not running:
            return running
        now, stamps = self._stamps()
        grace = timedelta(seconds=self.terms.grace_s)
        expired = []
        for trial in running:
            stamp = stamps.get(trial_id_of(trial))
            if stamp is None:
                self._beat(trial_id_of(trial))  # its grace starts now; see the module's docstring
            elif now - stamp > grace:
                expired.append(trial)
        return expired

    def _stamps(self) -> tuple[datetime, dict[int, datetime]]:
        """The database's now and the heartbeat of every RUNNING trial of the study that has one."""
        assert self._rdb is not None
        now, rows = running_heartbeats(self._rdb, self.study)
        if now is None:  # the database always answers now(); a None would be a driver bug worth seeing
            raise RuntimeError("the storage did not answer SELECT now()")
        # As Optuna compares them: PostgreSQL's now() carries a time zone, the stored stamps do not.
        return _naive(now), {trial_id: _naive(stamp) for trial_id, stamp in rows}


def claimed_before(a: FrozenTrial, b: optuna.Trial | FrozenTrial) -> bool:
    """`a` was taken to run before `b`: by start time (when it was asked for, or popped from the queue; written by
    the driver that took it), then number. Every driver reads the same stored values, so all agree on the order,
    clocks a little apart or not."""
    far = datetime.max
    return (a.datetime_start or far, a.number) < (b.datetime_start or far, b.number)


def _naive(moment: datetime | str) -> datetime:
    if isinstance(moment, str):  # SQLite's CURRENT_TIMESTAMP, when the driver does not convert it
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=None)
