"""Sandboxes and the images they run: the protocol, the Docker implementation, image builds."""

from swelego.sandbox.base import ExecResult, ResetMode, Sandbox
from swelego.sandbox.docker import DockerSandbox, SandboxLimits, docker_client, gc_containers

__all__ = ["DockerSandbox", "ExecResult", "ResetMode", "Sandbox", "SandboxLimits", "docker_client", "gc_containers"]
