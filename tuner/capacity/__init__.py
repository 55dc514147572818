"""What a slice can hold and do, known before a launch and used to judge what a launch measured.
    hardware       the accelerator catalog (chips x count, memory, FLOP/s, memory bandwidth)
    memory_fit     weights / KV-cache / fit estimates from config.json (the one parameter counter)
    prelaunch      the check before a launch: search-space rules, then the memory-fit estimate
    failure_rules  what a measured failure rules out before launch (kv_capacity: longer context, no more memory)
    roofline       each measured level against the slice's compute and decode (memory-bandwidth) ceilings
    plan           `tuner study plan`: the exact commands and memory estimates of the next configs, no launch
"""
