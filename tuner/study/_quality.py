"""The study's side of the output-quality guard: which probes each launch answers, the reference recorded once,
and the check every launch's answers are scored with (tuner.scoring.quality).

The probe set is one for the study: the union of every config's edges (tuner.trial.probes.study_probes), so the
reference answers it once and each launch answers the probes that fit its context. The reference is the first
launch of its config (quality.reference, default the first enqueue entry); until it has answered, trials are
launched one at a time. Its answers are stored with the study under a key of the model and the probe set, with
the server version that gave them: a resumed study reuses them, another model or probe set records them again, and
so does a launch that reports another server version (vLLM upgraded under a running study): that launch is not
judged (its notes say why), the reference config is queued again, and later launches are judged against it.
A reference launch that timed out at startup, crashed, died or hung is launched once more (a busy host can do that
to any config); one the slice cannot hold is not.
"""
from __future__ import annotations

from typing import Any

import optuna

from tuner.contracts.outcomes import FailureClass
from tuner.contracts.quality import Probe, QualityPlan
from tuner.contracts.results import TrialResult
from tuner.contracts.serving import ServingFlags
from tuner.inputs.spec import Study
from tuner.scoring.quality import QualityCheck, QualityReference, noise_gap, reference_key
from tuner.server.config import ServerConfig
from tuner.study.records import StudyRecord, write_quality_reference
from tuner.trial.probes import probes_for, study_probe_set

# Failures of the trusted config that a relaunch may not meet again.
_TRANSIENT_FOR_THE_REFERENCE = frozenset({FailureClass.STARTUP_TIMEOUT, FailureClass.CRASH,
                                          FailureClass.DIED_UNDER_LOAD, FailureClass.UNRESPONSIVE})


class QualityGuard:
    def __init__(self, study: Study, optuna_study: optuna.Study, vocab_size: int | None) -> None:
        spec = study.spec
        self.reference_params = spec.quality_reference()
        self.enabled = self.reference_params is not None and vocab_size is not None
        self.vocab_size = vocab_size or 0
        self.tolerance = spec.quality.tolerance
        self.optuna_study = optuna_study
        self.probes: list[Probe] = study_probe_set(study) if self.enabled else []
        self.key = reference_key(spec.model, self.probes)
        self._reference: QualityReference | None = None
        self.server_version = ""  # the last version a launch reported ("" until one did)

    @property
    def reference(self) -> QualityReference | None:
        """The stored reference for this model, probe set and server version (read from storage until it exists:
        another driver may record it)."""
        if self._reference is None and self.enabled:
            stored = StudyRecord.of(self.optuna_study).quality_reference
            self._reference = stored if stored is not None and self._valid(stored) else None
        return self._reference

    def _valid(self, stored: QualityReference) -> bool:
        versions = stored.server_version and self.server_version
        return stored.key == self.key and (not versions or stored.server_version == self.server_version)

    def version_changed(self, result: TrialResult) -> str:
        """The launch reports another server version than the reference's: forget the reference (it is recorded
        again by the reference config's next launch) and say so; "" when nothing changed."""
        reference = self.reference
        self.server_version = result.server_version or self.server_version
        if reference is None or not result.server_version or not reference.server_version:
            return ""
        if reference.server_version == result.server_version:
            return ""
        self._reference = None
        return (f"the server reports version {result.server_version}, the quality reference was recorded on"
                f" {reference.server_version}: this launch is not judged, and the reference config runs again")

    def waiting_for_reference(self) -> bool:
        """The guard is on and the reference has not answered yet: launch one trial at a time."""
        return self.enabled and self.reference is None

    def is_reference(self, params: dict[str, Any]) -> bool:
        wanted = self.reference_params or {}
        # null counts: {spec_method: null} (no speculation) is not matched by a config that speculates
        return self.enabled and all(params.get(k) == v for k, v in wanted.items())

    def plan_for(self, params: dict[str, Any], config: ServerConfig) -> QualityPlan | None:
        if not self.enabled:
            return None
        probes = probes_for(self.probes, config.flags)
        reference = self.reference
        answers = tuple(reference.answering({p.name for p in probes})) if reference is not None else None
        if reference is not None and not answers:
            return None  # none of this config's probes has a reference answer: nothing to compare
        batch = ServingFlags.of(config.flags).max_num_seqs or len(probes) or 1
        return QualityPlan(probes=tuple(probes), reference=answers if reference is not None else None,
                           vocab_size=self.vocab_size, concurrency=max(1, min(batch, len(probes))))

    def check(self) -> QualityCheck | None:
        return QualityCheck(self.reference, self.tolerance) if self.enabled else None

    def relaunch_reference(self, params: dict[str, Any], result: TrialResult, attempt: int) -> bool:
        """The reference's launch ended without answering for a reason a relaunch may not meet again (it timed out
        at startup on a busy host, died, hung): launch it once more, as the same trial's second attempt, rather than
        judge no config at all. A config
        the slice cannot hold (OOM, KV capacity, invalid flags) fails the same way again: the guard then reports
        that it has no reference."""
        return (attempt == 1 and self.waiting_for_reference() and self.is_reference(params)
                and result.failure_class in _TRANSIENT_FOR_THE_REFERENCE)

    def record_if_reference(self, params: dict[str, Any], trial_number: int, result: TrialResult) -> bool:
        """Keep the reference's answers when this launch is its first that answered every probe."""
        if not self.waiting_for_reference() or not self.is_reference(params) or not result.probes:
            return False
        if any(a.error or not a.tokens for a in result.probes):
            return False
        self._reference = QualityReference(key=self.key, params=dict(params), trial=trial_number,
                                           answers=list(result.probes), noise=noise_gap(result.probes, result.probes),
                                           server_version=result.server_version)
        write_quality_reference(self.optuna_study, self._reference)
        return True
