"""From what launches measured to what Optuna sees and what the user is shown.
    objectives    Goals (objectives, SLOs) and the operating point of a launch's levels
    score         TrialResult -> Score (outcome, values, constraints, stability of one launch)
    confirmation  a config's launches -> ConfigSummary (medians, spread, stability); the front
"""
