"""Every policy on a Track S benchmark, side by side: ``python -m benchmarks.evaluate``.

Streams every query of a benchmark (``--benchmark binary|openform``, ``--queries FILE``,
``--seed N``) through the fmp runtime — the program interpreter, the lockstep batch
executor, the trained backends and the learners of ``policy_store.learners`` — batch by
batch, with labels fed back after each batch (optionally ``--label-delay`` batches later,
for a ``--label-rate`` sample of items), exactly as the ``stream_batch`` and
``ingest_feedback`` flows do, but in one process without Prefect and without the object
store and DuckDB ledger, so that a λ sweep over twelve policies fits on a laptop. (The flows
themselves are exercised by ``make demo`` and the integration tests.)

Every backend call is computed once and shared by all policies (``counterfactual``): a
policy is charged what its calls cost when computed (FLOPs, parameters, wall ms, price),
plus its own compute (the image embedding and the posterior sampling of the fmp learners;
the ResNet forward, gradient and REINFORCE passes of the paper's learner).

Policies (``--policies``): ``monolithic`` (one image+question model), ``cheapest``,
``largest``, ``random``, ``static`` (the best single configuration per query in
hindsight, by coordinate descent on the objective), ``routing`` (per item, the whole
program on its cheapest or its largest configuration, chosen by a contextual bandit: the
paper's "LLM routing" baseline), ``paper`` (the paper's learner: a ResNet-18 per call site,
gradient Thompson sampling, REINFORCE), ``learned`` (fmp's per-call-site Thompson
sampling), ``shared`` (shared-model Thompson sampling, warm-started across queries),
``shared-budget`` (the same, holding a cost budget per item by adjusting λ online),
``audited`` and ``confirmed`` (a static configuration searched online by audits of
labelled items; ``confirmed`` also re-runs every "yes" on the largest backends), ``fmp``
(the recommended learner for the benchmark's answers: ``confirmed`` on yes/no, ``cascade``
on text; the flows' default policy runs the same),
``cascade`` (call-site cascades: each call runs cheap and is re-issued one rung up while a
learned confidence threshold does not trust the answer; every rung is charged) and
``oracle`` (per item, the cheapest run that answers right: the physical limit).

Objective: loss + λ·cost per item, cost in monolithic calls (FLOPs ÷ one monolithic call);
loss 0 when right, 5 for a missed positive and 1 for a false positive (binary), 1 when wrong
(open-form). Writes ``.fmp/eval-<benchmark>.json`` and ``.fmp/eval-<benchmark>-pareto.png``.

Modules, one concern each:

- ``harness``: the item streams, the evaluation context and settings, and running a
  learner over a stream batch by batch with the shared call cache and delayed labels;
- ``runners``: the policies and ``RUNNERS``, the table of policy names → runners, and
  ``recommended(answer_type)``, the learner the name ``fmp`` stands for; ``run_query`` runs a table's
  policies (every λ of the λ-dependent ones) on one stream;
- ``paths``: each item's known paths through the program (``PathMemo``): a policy that
  reaches one is answered from it instead of interpreting the program again;
- ``audit``: the audited search (``audited``, ``confirmed``) over a stream;
- ``summary``: quality (F1 or exact match), per-policy rows, the λ sweep and the table;
- ``intervals``: 95 % bootstrap intervals over queries, differences from ``largest`` paired
  on the same items, ``fmp``'s front against ``static``'s and ``routing``'s at every cost
  level, and the per-query table;
- ``plot``: the Pareto PNG (matplotlib is imported there only, when a plot is drawn);
- ``cli``: the argument parser, ``evaluate(args)`` and ``main``; ``__main__`` runs it.
"""
