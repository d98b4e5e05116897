"""The agent side: the tools a policy calls inside a sandbox."""

from swelego.agent.tools import TOOL_SCHEMAS, ToolBox, ToolResult, parse_tool_call_arguments

__all__ = ["TOOL_SCHEMAS", "ToolBox", "ToolResult", "parse_tool_call_arguments"]
