"""Leases on running trials (tuner.study._lease): a held trial stays its driver's, one nobody renews expires after
the grace and is re-queued exactly once however many drivers find it."""
from __future__ import annotations

import time

import optuna
from optuna.trial import TrialState

from tuner.inputs.spec import LeaseSpec
from tuner.study._bookkeeping import recover_interrupted
from tuner.study._lease import Lease, claimed_before
from tuner.study.storage import open_storage

TERMS = LeaseSpec(heartbeat_s=0.5, grace_s=1.0)
SEQS = {"seqs": optuna.distributions.IntDistribution(1, 10)}


def two_drivers(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    one = optuna.create_study(study_name="s", storage=open_storage(url), directions=["maximize", "maximize"])
    other = optuna.load_study(study_name="s", storage=open_storage(url))
    return one, other


def wait_past_grace() -> None:
    time.sleep(TERMS.grace_s + 1.2)  # SQLite stamps whole seconds


def test_a_held_trial_is_never_expired_and_an_abandoned_one_is_requeued_once(tmp_path):
    one, other = two_drivers(tmp_path)
    with Lease(one, TERMS) as mine, Lease(other, TERMS) as theirs:
        held = one.ask(SEQS)
        mine.hold(held)
        abandoned = one.ask(SEQS)  # asked, then its driver died before holding it: no heartbeat at all
        assert theirs.expired() == []  # a trial without a heartbeat gets one: its grace starts now
        wait_past_grace()
        assert [t.number for t in theirs.expired()] == [abandoned.number]
        assert mine.expired()[0].number == abandoned.number  # its own held trial is never expired by anyone
        # Both drivers recover: the trial fails and is queued again once.
        recovered = recover_interrupted(other, theirs) + recover_interrupted(one, mine)
    assert recovered == [abandoned.number]
    states = {t.number: t for t in one.get_trials()}
    assert states[held.number].state == TrialState.RUNNING
    assert states[abandoned.number].state == TrialState.FAIL
    assert states[abandoned.number].user_attrs["failure_class"] == "infra"
    queued = [t for t in one.get_trials() if t.state == TrialState.WAITING]
    assert len(queued) == 1 and queued[0].user_attrs["requeued_from"] == abandoned.number


def test_a_driver_that_stops_renewing_loses_its_trials(tmp_path):
    one, other = two_drivers(tmp_path)
    with Lease(one, TERMS) as mine:
        trial = one.ask(SEQS)
        mine.hold(trial)
    # The lease's thread stopped with its driver: nothing renews the trial any more.
    with Lease(other, TERMS) as theirs:
        wait_past_grace()
        assert [t.number for t in theirs.expired()] == [trial.number]


def test_claim_order_is_start_time_then_number(tmp_path):
    one, _ = two_drivers(tmp_path)
    one.enqueue_trial({"seqs": 3})  # number 0, waiting
    one._storage.create_new_trial(one._study_id)  # number 1: asked by a driver while 0 still waited
    time.sleep(0.01)
    popped = one.ask(SEQS)  # 0, taken to run after 1
    frozen = {t.number: t for t in one.get_trials()}
    assert popped.number == 0
    assert claimed_before(frozen[1], popped) and not claimed_before(frozen[0], frozen[1])


def test_in_memory_storage_expires_every_trial_not_held(tmp_path):
    study = optuna.create_study(directions=["maximize", "maximize"])
    with Lease(study, TERMS) as lease:
        held = study.ask(SEQS)
        lease.hold(held)
        left = study.ask(SEQS)
        assert [t.number for t in lease.expired()] == [left.number]
