"""The contracts between stages: what a launch is asked to do and what it reports.
    sweep    SweepPlan (driver -> trial), TrialOutcome (trial -> driver), the order of a plan's levels
    results  LevelResult, TrialResult and the measurement types inside them
"""
