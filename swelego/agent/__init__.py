"""The agent side: the tools a policy calls inside a sandbox, the loop that runs a policy,
the recorded trajectory, and an oracle policy built from a task's gold patch."""

from swelego.agent.loop import DEFAULT_SYSTEM_PROMPT, Policy, run_episode
from swelego.agent.oracle import OraclePolicy
from swelego.agent.tools import TOOL_SCHEMAS, ToolBox, ToolResult, parse_tool_call_arguments
from swelego.trajectories.record import Step, Trajectory

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "TOOL_SCHEMAS",
    "OraclePolicy",
    "Policy",
    "Step",
    "ToolBox",
    "ToolResult",
    "Trajectory",
    "parse_tool_call_arguments",
    "run_episode",
]
