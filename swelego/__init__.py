"""swelego core: what every pipeline stage shares.

Sandboxes and images (``swelego.sandbox``), the swebench-row schema (``swelego.schema``),
and the test harness that runs and grades tests (``swelego.harness``).
"""

__version__ = "0.1.0"
