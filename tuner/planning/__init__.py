"""Before a launch, on the driver: what the study will send, whether a config can launch, and what it will cost.
    traffic      the study's dataset / shapes, SLOs and hardware -> Traffic and the SweepPlan each launch gets
    prelaunch    the check before a launch: search-space rules, then the memory-fit estimate; the flag check
    launch_time  a launch's slice time before one is measured (an estimate, labelled so)
    study_plan   `tuner study plan`: the exact commands and memory estimates of the next configs, no launch
    new_study    a `vllm serve` line + slice + objective + traffic -> a study file and its search space (`study new`)
"""
