"""Policies: which learner routes which program, the learner's arms and costs, and routing.

This package sits between the runtime (``modules``) and the policy store (``policy_store``)
on one side and whoever runs programs (``flows``, ``benchmarks``) on the other:

- ``policies.specs``: named policies (``POLICIES``), learner configs, building a learner;
- ``policies.arms``: candidate backends per call site, cheapest first;
- ``policies.costs``: measured unit FLOPs per backend, the monolithic model, normalised
  arm costs and the cost profiles registered in the ledger;
- ``policies.routing``: the seeded router that turns a learner into the executor's Router;
- ``policies.choices``: what a policy version chose on a batch and would choose now.
"""
