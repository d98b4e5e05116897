"""Moved to the core: `swelego.sandbox.envspec` is the one environment inference of every
path (env build, data synth, data validate, data build). Re-exported here for old imports."""

from swelego.sandbox.envspec import (  # noqa: F401
    NOT_FOR_TESTS,
    PREFERRED_PYTHON,
    PYTEST_INI_PLUGINS,
    PYTEST_PLUGINS,
    PYTHONS,
    TEST_CMD,
    EnvOverrides,
    EnvSpec,
    choose_python,
    dependency_key,
    infer_env,
    listed_pythons,
    pytest_config,
    requires_python,
)
