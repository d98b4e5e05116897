"""Test-time scaling: k rollouts per instance, verifier selection, SWE-bench scoring and reports."""
