"""The Prefect task that answers one (call site, backend) group of a batch.

This is the only place in ``modules`` that imports Prefect. One task run per group,
named like the program reads: ``exists@2:11[det-s]``.
"""

from __future__ import annotations

from typing import cast

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from modules.executor import GroupRequest, GroupResult, RoundRunner, answer_group
from modules.registry import Registry


@task(name="run_module", task_run_name="{call_site}[{backend}]", cache_policy=NO_CACHE,
      persist_result=False)
def run_module(registry: Registry, request: GroupRequest, call_site: str, backend: str) -> GroupResult:
    """Answer every call of one group on its backend.

    Args:
        registry: the backends (models are loaded once per worker and cached).
        request: the group's calls.
        call_site: the group's call site id (for the task run's name).
        backend: the group's backend name (for the task run's name).

    Returns:
        Each call's output with its usage (FLOPs, parameters, price), and the group's wall time.
    """
    return answer_group(registry, request)


def prefect_round_runner(registry: Registry) -> RoundRunner:
    """A RoundRunner that submits each group as a task run and waits for all of them."""

    def run_round(requests: list[GroupRequest]) -> list[GroupResult]:
        # quote(): the task engine would otherwise walk every call of the request (images
        # included) twice per task run, looking for futures among the parameters; the task
        # function gets the request itself
        futures = [
            run_module.submit(registry, cast(GroupRequest, quote(req)), call_site=req.call_site,
                              backend=req.backend)
            for req in requests
        ]
        return [f.result() for f in futures]

    return run_round


def local_round_runner(registry: Registry) -> RoundRunner:
    """The same rounds without Prefect (unit tests, sweeps)."""
    return lambda requests: [answer_group(registry, req) for req in requests]
