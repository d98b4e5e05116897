"""Run independent work items locally or as Ray tasks, with the same call."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import click

from swelego.config import doc_field


@dataclass
class ExecutorOptions:
    """Where a command's independent work items run; part of the config of every command that
    fans out (synthetic repositories, real repositories, rollout episodes)."""

    executor: str = doc_field("`local` threads, or `ray` tasks on a cluster (the data build sets its own).",
                              default="local")
    ray_address: str | None = doc_field("Ray cluster to join (e.g. auto); null = start a local one.", default=None)


# The command-line flags of ExecutorOptions' fields (swelego.config.config_flags).
EXECUTOR_FLAGS = [("executor", "--executor", {"type": click.Choice(["local", "ray"])}),
                  ("ray_address", "--ray-address", {})]


def run_tasks(fn: Callable[..., Any], items: list[Any], *, executor: str = "local",
              ray_address: str | None = None, num_cpus: float = 1.0,
              workers: int = 1) -> Iterator[tuple[Any, Any]]:
    """Yield (item, result or exception) as items finish. An exception in one item is
    returned, not raised, so the rest of the batch continues. Locally, `workers` threads
    run items at once (the work is mostly waiting on containers or endpoints); with Ray,
    the cluster's CPUs decide."""
    if executor == "local":
        if workers <= 1:
            for item in items:
                try:
                    yield item, fn(item)
                except Exception as e:  # noqa: BLE001 - reported per item by the caller
                    yield item, e
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(fn, item): item for item in items}
            try:
                for fut in as_completed(futures):
                    exc = fut.exception()
                    yield futures[fut], exc if exc is not None else fut.result()
            finally:
                for fut in futures:
                    fut.cancel()
        return
    if executor != "ray":
        raise ValueError(f"unknown executor {executor!r} (local or ray)")
    try:
        import ray
    except ImportError:
        from swelego.errors import SwelegoError

        raise SwelegoError("--executor ray needs Ray: pip install -e '.[ray]'") from None
    if not ray.is_initialized():
        if ray_address:
            ray.init(address=ray_address, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=num_cpus, max_retries=0)(_call)
    pending = {remote.remote(fn, item): item for item in items}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        ref = done[0]
        item = pending.pop(ref)
        try:
            yield item, ray.get(ref)
        except Exception as e:  # noqa: BLE001
            cause = getattr(e, "cause", None)
            yield item, cause if isinstance(cause, Exception) else e


def _call(fn: Callable[..., Any], item: Any) -> Any:
    # Ray takes only plain functions; `fn` itself (a partial, say) travels as an argument.
    return fn(item)
