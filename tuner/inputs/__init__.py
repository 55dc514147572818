"""What the user hands tuner, validated once: every later stage reads these models, never the YAML.
    spec          study file -> StudySpec (what to tune, how to launch, how to load, where to store)
    search_space  search-space file -> SearchSpace (parameters, conditions, targets, rules)
    command_line  a user's `vllm serve ...` line -> ServeCommand (model, fixed flags, knob values, env)
    _yaml         YAML -> pydantic with one-line errors naming the file and the key
"""
