"""BuildBox: where a project's own build code runs — a no-network sandbox of the base image.

Reading a project's metadata (when it is not static) and turning an sdist into a wheel both
execute the project's setup.py or PEP 517 backend, so neither happens on the host: the host
copies the sources and the wheels of the build requirements in, the box runs pip offline,
and only plain files (a JSON report, wheels) come back out.
"""

from __future__ import annotations

import functools
import io
import json
import re
import shlex
import tarfile
from pathlib import Path, PurePosixPath

from swelego.errors import SwelegoError
from swelego.sandbox.docker import DockerSandbox, SandboxLimits

# Builds of C extensions need more than a test sandbox's defaults.
BUILD_LIMITS = SandboxLimits(memory="4g", cpus=2.0, pids=2048, exec_timeout=1800.0, max_output=512 * 1024)
NO_MATCH = re.compile(r"No matching distribution found for ([^\s(]+)")
_WHEEL_NAME = re.compile(r"^[A-Za-z0-9_.+!-]+\.whl$")
_PIP_ENV = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "PIP_ROOT_USER_ACTION": "ignore",
            "PYTHONDONTWRITEBYTECODE": "1"}
# A fresh venv with the newest pip from the build wheels: the base's own pip may predate --report.
_VENV = ("python3 -m venv /tmp/venv >/dev/null && "
         "/tmp/venv/bin/python -m pip install -q --no-index --find-links /in/build --upgrade pip")


class MissingRequirement(SwelegoError):
    """The build asked for a requirement that the build wheels do not hold (a build
    dependency only the backend knows about); fetch it on the host and try again."""

    def __init__(self, requirement: str):
        self.requirement = requirement
        super().__init__(f"the build needs {requirement}, which is not among the build wheels")


class BuildCodeError(SwelegoError):
    """The project's build code failed in the box; `log_tail` holds the end of its output."""

    def __init__(self, message: str, log_tail: str = ""):
        self.log_tail = log_tail
        super().__init__(message)


def _tar(entries: dict[str, Path]) -> bytes:
    """A tar of host paths under new names, owned by root so the box's root (with every
    capability dropped) can write into the copies."""
    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, path in entries.items():
            for parent in reversed(PurePosixPath(name).parents[:-1]):
                d = tarfile.TarInfo(str(parent))
                d.type, d.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(d)
            tf.add(path, arcname=name, filter=owned_by_root)
    return buf.getvalue()


class BuildBox:
    """Runs build code offline in containers of `image` (the environment's base image)."""

    def __init__(self, image: str, *, client, limits: SandboxLimits = BUILD_LIMITS):
        self.image, self.client, self.limits = image, client, limits

    @functools.cached_property
    def image_id(self) -> str:
        return self.client.images.get(self.image).id

    def _run(self, inputs: dict[str, Path], script: str, env: dict[str, str] | None = None):
        """Copy `inputs` to /in/<name>, run `script` (bash) with /out empty; return the
        sandbox (still open: read /out from it) and the result. Raises MissingRequirement."""
        sb = DockerSandbox(self.image, client=self.client, limits=self.limits, workdir="/tmp",
                           env={**_PIP_ENV, **(env or {})}, labels={"swelego.kind": "build"})
        try:
            sb.start()
            r = sb.exec("mkdir -p /in /out", timeout=60)
            if not r.ok:
                raise BuildCodeError(f"the build box of {self.image} does not start: {r.output.strip()[-200:]}")
            if not sb.container.put_archive("/in", _tar(inputs)):
                raise BuildCodeError("could not copy the build inputs into the build box")
            r = sb.exec(script)
        except BaseException:
            sb.close()
            raise
        if not r.ok:
            sb.close()
            tail = "\n".join(r.output.rstrip().splitlines()[-30:])
            if m := NO_MATCH.search(r.output):
                raise MissingRequirement(m.group(1))
            why = "timed out" if r.timed_out else f"exit code {r.exit_code}"
            last = next((ln.strip() for ln in reversed(r.output.splitlines()) if ln.strip()), "")
            raise BuildCodeError(f"the build failed in the sandbox ({why}): {last[:300]}", tail)
        return sb, r

    def metadata(self, src: Path, build_wheels: Path, *, version: str = "") -> dict:
        """The core metadata (name, requires_dist, ...) of the project at `src`, as pip
        prepares it with the project's own backend."""
        env = {"SETUPTOOLS_SCM_PRETEND_VERSION": version} if version else {}
        script = (f"set -euo pipefail; {_VENV}; cd /in/src; /tmp/venv/bin/python -m pip install -q --dry-run "
                  "--ignore-installed --no-deps --no-index --find-links /in/build --report /out/report.json /in/src")
        sb, _ = self._run({"src": src, "build": build_wheels}, script, env)
        try:
            report = json.loads(sb.read_file("/out/report.json"))
        except (FileNotFoundError, ValueError) as e:
            raise BuildCodeError(f"pip wrote no readable report in the sandbox ({e})") from None
        finally:
            sb.close()
        try:
            return report["install"][0]["metadata"]
        except (KeyError, IndexError, TypeError):
            raise BuildCodeError("pip's report in the sandbox holds no metadata") from None

    def build_wheel(self, sdist: Path, build_wheels: Path, dest: Path) -> list[Path]:
        """Build `sdist` into wheels in `dest` (its own wheel only: dependencies are the host's
        to download)."""
        name = f"sdist/{sdist.name}"
        script = (f"set -euo pipefail; {_VENV}; /tmp/venv/bin/python -m pip wheel -q --no-deps --no-index "
                  f"--find-links /in/build -w /out {shlex.quote('/in/' + name)}")
        sb, _ = self._run({name: sdist, "build": build_wheels}, script)
        try:
            chunks, _ = sb.container.get_archive("/out")
            data = b"".join(chunks)
        finally:
            sb.close()
        dest.mkdir(parents=True, exist_ok=True)
        out = []
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            for m in tf:
                base = PurePosixPath(m.name).name
                # only plain files with a wheel's name, written under their base name
                if m.isfile() and _WHEEL_NAME.match(base):
                    (dest / base).write_bytes(tf.extractfile(m).read())
                    out.append(dest / base)
        if not out:
            raise BuildCodeError(f"building {sdist.name} in the sandbox produced no wheel")
        return out
