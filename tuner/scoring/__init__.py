"""From what launches measured to what Optuna sees and what the user is shown.
    objectives    each objective read off a launch's levels, and the operating point (names: tuner.contracts.goals)
    score         TrialResult -> Score (outcome, values, constraints, stability of one launch)
    quality       a launch's probe answers against the quality reference
    confirmation  a config's launches -> ConfigSummary (medians, spread, stability); the noise-aware front
"""
