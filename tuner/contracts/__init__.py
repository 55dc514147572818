"""The vocabulary every stage shares, with no behaviour of its own beyond describing itself.
    results   LevelResult, TrialResult and the measurement types inside them (trial -> driver -> storage)
    outcomes  Outcome and FailureClass: how a launch ended
    phases    LaunchPhase: where a launch's slice time went
    goals     objective names and directions, SLO names, Goals (the study's objectives and limits)
    hardware  the accelerator catalogue (chips x count, memory, FLOP/s, memory bandwidth)
    sampling  Sampling (what the traffic asks for), the server's defaults, what was in force
    quality   QualityPlan (the probes a launch answers) and their answers
    matrix    a matrix point's result
"""
