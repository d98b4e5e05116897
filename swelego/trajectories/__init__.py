"""Trajectories, in one home: the recorded episode and everything datasets do with it.

- `record`: `Trajectory` / `Step`, the on-disk record every room reads and writes;
- `labels`: step-level error labels (SFT error masking, export masks);
- `filter`: which trajectories are kept for training, and why the others were dropped;
- `formats`: interchange formats (LLaMA-Factory sharegpt with `turn_mask`, OpenHands text
  calls; SWE-Lego and SWE-Gym / OpenHands import);
- `atif`: Harbor's Agent Trajectory Interchange Format (export);
- `export`: `export(records, formats, out, cfg=...)`, shared by `swelego data export` and the
  data build's export stage.

Reading and writing the files is `swelego.records`. This package imports only the record
eagerly (the agent loop needs it; the other modules use the agent's tools).
"""

from swelego.trajectories.record import Step, Trajectory

__all__ = ["Step", "Trajectory"]
