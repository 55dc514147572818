"""What a slice can hold and do, known before a launch and used to judge what a launch measured.
    memory_fit     weights / KV-cache / fit estimates from config.json (the one parameter counter)
    failure_rules  what a measured failure rules out before launch (kv_capacity: longer context, no more memory)
    roofline       each measured level against the slice's compute and decode (memory-bandwidth) ceilings
The slices themselves (chips, memory, FLOP/s, bandwidth) are shared vocabulary: tuner.contracts.hardware.
"""
