"""Step-level error labels for SFT error masking. The rules live in the core
(`swelego.trajectories.labels`) because exporters and the data build use them too; this is the SFT
room's public name for them."""

from swelego.trajectories.labels import (  # noqa: F401
    ALL_RULES,
    DEFAULT_RULES,
    IMPORTED_MASK,
    MASK_SOURCES,
    LabelRules,
    LabelSummary,
    TurnLabel,
    label_trajectory,
    turn_labels,
)
