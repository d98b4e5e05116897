"""`swelego data build CONFIG.yaml`: one config from repositories to a training-ready dataset.

The build runs the data stages in order (data_gen.build.stages), each a thin call into its own
room's public API: synth, real, tasks, rollout, filter, export, card. The package is:

    config   BuildConfig (the component configs composed) and its checks
    engine   stages, their recorded state (state/<stage>.json), keys and the runner; the skip
             and resume rule is in its docstring
    stages   the stage bodies and STAGES, the list the engine runs
    display  the rich progress display and the summary table
    hub      publishing to the Hugging Face Hub
    cli      the `swelego data build` command
"""

from data_gen.build.cli import build_cmd  # noqa: I001 - last: it imports the modules above
from data_gen.build.config import (
    EXPORT_FORMATS,
    BuildConfig,
    CardConfig,
    DecontaminationConfig,
    ExportConfig,
    LLMConfig,
    RealConfig,
    SyntheticConfig,
    TeacherConfig,
    TrajectoryFilterConfig,
    check_config,
    load_build_config,
)
from data_gen.build.engine import (
    FORMAT,
    BuildReport,
    Context,
    Stage,
    StageResult,
    StageState,
    file_sha256,
    load_states,
    outputs_intact,
    run_stages,
    select_stages,
    stage_key,
    state_path,
)
from data_gen.build.hub import PUBLISHED, check_hub_access, push_to_hub
from data_gen.build.stages import STAGE_NAMES, STAGES, run_build, wanted_trajectories

__all__ = [
    "EXPORT_FORMATS", "FORMAT", "PUBLISHED", "STAGES", "STAGE_NAMES", "BuildConfig", "BuildReport", "CardConfig",
    "Context", "DecontaminationConfig", "ExportConfig", "LLMConfig", "RealConfig", "Stage", "StageResult",
    "StageState", "SyntheticConfig", "TeacherConfig", "TrajectoryFilterConfig", "build_cmd", "check_config",
    "check_hub_access", "file_sha256", "load_build_config", "load_states", "outputs_intact", "push_to_hub",
    "run_build", "run_stages", "select_stages", "stage_key", "state_path", "wanted_trajectories",
]
