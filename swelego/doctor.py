"""`swelego doctor`: what this machine has, what is missing, and how to fix it."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

PACKAGES = ("swebench", "docker", "transformers", "trl", "datasets", "accelerate", "torch", "click", "rich", "libcst")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def _docker_checks() -> list[Check]:
    from swelego.sandbox.images import BASE_DISTS, base_image_name

    try:
        import docker

        client = docker.from_env(timeout=10)
        v = client.version()
    except Exception as e:
        return [Check("docker engine", False, f"not reachable ({type(e).__name__})",
                      "as root on Debian/Ubuntu: `make engine` (installs docker.io, starts dockerd); or set DOCKER_HOST")]
    checks = [Check("docker engine", True, f"{v.get('Version')} (API {v.get('ApiVersion')})")]
    for dist, py in BASE_DISTS.items():
        name = base_image_name(dist)
        try:
            client.images.get(name)
            checks.append(Check(f"base image {name}", True, f"present (Python {py})", required=False))
        except Exception:
            checks.append(Check(f"base image {name}", False, "not built",
                                f"`swelego env base {dist}` (debootstrap, ~1 min)", required=dist == "bookworm"))
    return checks


def _gpu_checks() -> list[Check]:
    checks = []
    smi = shutil.which("nvidia-smi")
    if smi:
        p = subprocess.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader"], capture_output=True, text=True)
        gpus = p.stdout.strip().splitlines() if p.returncode == 0 else []
        checks.append(Check("GPU", bool(gpus), "; ".join(gpus) or "nvidia-smi found but no GPU answered",
                            "check the NVIDIA driver", required=False))
    else:
        checks.append(Check("GPU", False, "none (CPU only)", "training beyond the tiny preset needs a CUDA GPU",
                            required=False))
    try:
        import torch

        cuda = torch.cuda.is_available()
        checks.append(Check("torch CUDA", cuda, f"torch {torch.__version__}, CUDA {'available' if cuda else 'not available'}",
                            "install a CUDA build of torch on GPU machines", required=False))
    except ImportError:
        checks.append(Check("torch", False, "not installed", "`pip install torch==2.13.0` before swelego"))
    try:
        checks.append(Check("flash-attn", True, version("flash-attn"), required=False))
    except PackageNotFoundError:
        checks.append(Check("flash-attn", False, "not installed (sdpa attention is used)",
                            "on a CUDA machine: pip install --no-build-isolation -e '.[gpu]'", required=False))
    return checks


def run_checks() -> list[Check]:
    checks = [Check("python", sys.version_info >= (3, 11), platform.python_version(), "use Python >= 3.11")]
    for pkg in PACKAGES:
        try:
            checks.append(Check(pkg, True, version(pkg)))
        except PackageNotFoundError:
            checks.append(Check(pkg, False, "not installed", "`pip install -e .` (see README)"))
    checks += _docker_checks()
    checks.append(Check("debootstrap", shutil.which("debootstrap") is not None, shutil.which("debootstrap") or "not found",
                        "`apt-get install debootstrap` (only to build offline base images)", required=False))
    checks += _gpu_checks()
    return checks


@click.command()
def doctor():
    """Report the Docker engine, base images, GPU/CUDA, flash-attn and package versions,
    with how to fix what is missing. Exits 1 when something required is missing."""
    checks = run_checks()
    t = Table(title="swelego doctor")
    for col in ("check", "status", "detail", "how to fix"):
        t.add_column(col)
    for c in checks:
        mark = "[green]ok[/]" if c.ok else ("[red]missing[/]" if c.required else "[yellow]optional[/]")
        t.add_row(escape(c.name), mark, escape(c.detail), "" if c.ok else escape(c.fix))
    Console().print(t)
    if any(c.required and not c.ok for c in checks):
        raise SystemExit(1)
