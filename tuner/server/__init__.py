"""The server stage: one vLLM process per trial, from its exact launch to why it stopped.

    config    sampled params + fixed flags/env -> ServerConfig (argv + env, never a shell string)
    process   ServerConfig -> a running server on a free port in its own process group; readiness; teardown
    _reaper   the parent of every server process: ends its group when the worker that started it goes away
    failures  exit code + log -> FailureClass (TPU, GPU and CPU signatures are data inside it)
    device    who else holds memory on the server's GPUs (nvidia-smi), evidence for infra vs the config's fault
    startup   load / compile / total startup times and compile-cache state, from the server's log
"""
