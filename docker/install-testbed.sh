#!/usr/bin/env bash
# Install /testbed into /opt/venv, editable where the build backend allows it, then run
# the user's setup commands and check that the tree is still clean.
set -euo pipefail
cd /testbed
if pip install -q --no-index --find-links /opt/swelego/wheels --no-build-isolation --no-deps -e . 2>/tmp/editable.log; then
  echo "swelego: installed /testbed editable"
else
  # Not installable (no build config, or a backend without PEP 660): put the sources on
  # sys.path instead, which is what an editable install amounts to.
  root=/testbed; [ -d src ] && [ ! -f __init__.py ] && root=/testbed/src
  site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$root" > "$site/swelego-testbed.pth"
  echo "swelego: editable install failed ($(tail -n 1 /tmp/editable.log)); added $root to sys.path"
fi
if grep -qvE '^[[:space:]]*(#|$)' /opt/swelego/setup.sh 2>/dev/null; then
  echo "swelego: running setup commands"
  bash -euxo pipefail /opt/swelego/setup.sh
fi
dirty=$(git status --porcelain)
if [ -n "$dirty" ]; then
  echo "swelego: installing left the tree dirty:" >&2; echo "$dirty" >&2; exit 1
fi
