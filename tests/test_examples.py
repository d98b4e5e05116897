"""The examples run as a user would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import TEST_NS

ROOT = Path(__file__).resolve().parents[1]


def test_harness_quickstart(base_image):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "harness_quickstart.py"), TEST_NS],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "FAIL_TO_PASS: ['tests/test_even.py::test_median_even', 'tests/test_even.py::test_median_param[xs0-1.5]']" in r.stdout
    assert "official swebench harness, gold patch: resolved=True" in r.stdout
    assert "official swebench harness, empty patch: resolved=False" in r.stdout
