"""A locally built image laid out like the official SWE-bench ones, for tests (no registry).

What matters is copied from the official layout: the repository's environment is a "conda"
env at /opt/miniconda3/envs/testbed (here a venv holding pytest, installed from wheels
downloaded on the host and installed with --no-index), activated only from /root/.bashrc
(`source /opt/miniconda3/etc/profile.d/conda.sh && conda activate testbed`), PATH starts
with /opt/miniconda3/bin whose `python` is the base interpreter without the repo's
dependencies, and the repo sits at /testbed at its base commit with the later fix commit
still among its git objects. Unlike the official .bashrc, ours starts with the early
`return` guard of Ubuntu's default .bashrc, so only a truly interactive shell activates.
The `conda` here is a shell function that knows `activate` and `deactivate`.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ENV_PREFIX = "/opt/miniconda3/envs/testbed"

CONDA_SH = r"""# a stand-in for conda's shell hook: environments are directories under /opt/miniconda3/envs
conda() {
  case "$1" in
    activate)
      local name="${2:-base}" prefix=/opt/miniconda3
      [ "$name" = base ] || prefix="/opt/miniconda3/envs/$name"
      if [ ! -d "$prefix/bin" ]; then echo "EnvironmentNameNotFound: Could not find conda environment: $name" >&2; return 1; fi
      [ -n "${CONDA_PREFIX:-}" ] && conda deactivate
      export CONDA_PREFIX="$prefix" CONDA_DEFAULT_ENV="$name" PATH="$prefix/bin:$PATH"; hash -r ;;
    deactivate)
      [ -n "${CONDA_PREFIX:-}" ] || return 0
      PATH=":$PATH:"; PATH="${PATH//:$CONDA_PREFIX\/bin:/:}"; PATH="${PATH#:}"; export PATH="${PATH%:}"
      unset CONDA_PREFIX CONDA_DEFAULT_ENV; hash -r ;;
    *) echo "conda (test stand-in): only activate and deactivate" >&2; return 1 ;;
  esac
}
"""

ACTIVATE = '. /opt/miniconda3/etc/profile.d/conda.sh\nconda activate "${1:-base}"\n'

BASHRC = """# ~/.bashrc: executed by bash(1) for non-login shells.
# If not running interactively, don't do anything
case $- in
    *i*) ;;
      *) return;;
esac
source /opt/miniconda3/etc/profile.d/conda.sh && conda activate testbed
"""

DOCKERFILE = """FROM {base}
ENV PATH=/opt/miniconda3/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
COPY wheels /tmp/wheels
COPY conda.sh /opt/miniconda3/etc/profile.d/conda.sh
COPY activate /opt/miniconda3/bin/activate
RUN ln -s /usr/bin/python3 /opt/miniconda3/bin/python \\
 && /usr/bin/python3 -m venv {prefix} \\
 && {prefix}/bin/pip install -q --no-index --find-links /tmp/wheels pytest \\
 && rm -rf /tmp/wheels \\
 && echo /testbed > "$({prefix}/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/testbed.pth"
COPY bashrc /root/.bashrc
COPY testbed /testbed
WORKDIR /testbed
"""


def _git(*args: str, cwd: Path) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": "/usr/bin:/bin:/usr/local/bin"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def build_official_layout_image(client, base_image: str, repo: Path, fix_patch: str, tag: str, work: Path,
                                python: str = "3.11") -> tuple[str, str, str]:
    """Build `tag` from `base_image` with a copy of the git repo `repo` at /testbed: a fix
    commit (`fix_patch`) is made on top and the branch reset to the base, as a clone reset
    to the base commit leaves it. Returns (tag, base commit, fix commit)."""
    ctx = work / "ctx"
    if ctx.exists():
        shutil.rmtree(ctx)
    ctx.mkdir(parents=True)
    testbed = ctx / "testbed"
    shutil.copytree(repo, testbed, symlinks=True)
    base = _git("rev-parse", "HEAD", cwd=testbed).strip()
    subprocess.run(["git", "apply"], input=fix_patch, text=True, cwd=testbed, check=True, capture_output=True)
    _git("add", "-A", cwd=testbed)
    _git("commit", "-qm", "fix the bug", cwd=testbed)
    fix = _git("rev-parse", "HEAD", cwd=testbed).strip()
    _git("reset", "-q", "--hard", base, cwd=testbed)
    wheels = ctx / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(wheels),
                    "--python-version", python, "--implementation", "cp", "pytest"], check=True, capture_output=True)
    (ctx / "conda.sh").write_text(CONDA_SH)
    (ctx / "activate").write_text(ACTIVATE)
    (ctx / "bashrc").write_text(BASHRC)
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=base_image, prefix=ENV_PREFIX))
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as tf:
        tf.add(ctx, arcname=".")
    tar.seek(0)
    log = []
    for chunk in client.api.build(fileobj=tar, custom_context=True, tag=tag, rm=True, forcerm=True,
                                  network_mode="none", pull=False, decode=True):
        log.append(chunk.get("stream", "") or chunk.get("error", ""))
        if "error" in chunk:
            raise RuntimeError(f"building {tag} failed: {chunk['error']}\n{''.join(log)[-2000:]}")
    return tag, base, fix
