"""Moved to the core (`swelego.sandbox.envrepair`), where `env build`, `data validate` and the
benchmarks share it; re-exported here for old imports."""

from swelego.sandbox.envrepair import (  # noqa: F401
    CONTEXT_FILES,
    Attempt,
    EnvFailure,
    log_excerpt,
    parse_spec,
    repair_loop,
    repair_prompt,
    repo_context,
)
