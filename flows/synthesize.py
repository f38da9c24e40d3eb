"""The synthesize flow: task text -> validated program, stored once per task in the policy store.

The same task text (case and spacing aside) from the same synthesizer and model reuses the
stored program unless ``regenerate`` is set; a stored program that no longer validates
against the runtime is regenerated. ``stream_info_for_task`` turns the result into the
``StreamInfo`` a stream runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows._runtime import policy_store_for, settings_for
from flows.runs import FLOW_OPTIONS
from flows.secrets import synthesizer_api_key
from modules.synthesis import make_synthesizer, task_hash, validate
from modules.synthesis import synthesize as run_synthesis
from policy_store.records import CallSiteInfo
from policy_store.store import PolicyStore, SynthesizedProgram
from storage.records import StreamInfo


@dataclass(frozen=True)
class SynthesisSummary:
    """What the flow stored (or reused) for a task."""

    task_text: str
    task_hash: str
    revision: int
    program_id: str
    synthesizer: str
    model: str
    version: str
    attempts: int
    reused: bool
    source: str


def synthesize_task(db: PolicyStore, task_text: str, synthesizer: str = "grammar", *,
                    regenerate: bool = False, answer_type: str = "bool", model: str | None = None,
                    base_url: str | None = None) -> SynthesisSummary:
    """Reuse the stored program for ``task_text`` or synthesize, validate and store a new one."""
    writer = make_synthesizer(synthesizer, model=model, base_url=base_url,
                              api_key=synthesizer_api_key(synthesizer))
    key = task_hash(task_text)
    if not regenerate:
        stored = db.lookup_synthesized(key, writer.name, writer.model)
        if stored is not None and stored.answer_type == answer_type and \
                validate(stored.source, answer_type).ok:
            return _summary(stored, reused=True)
    result = run_synthesis(task_text, writer, answer_type)
    sites = [CallSiteInfo(s.id, s.function, s.line, s.col) for s in result.program.call_sites]
    saved = db.save_synthesized(SynthesizedProgram(
        task_hash=key, task_text=task_text, answer_type=answer_type, synthesizer=writer.name,
        model=writer.model, version=writer.version, source=result.source,
        attempts=len(result.attempts)), sites)
    return _summary(saved, reused=False)


def _summary(record: SynthesizedProgram, reused: bool) -> SynthesisSummary:
    return SynthesisSummary(record.task_text, record.task_hash, record.revision, record.program_id,
                            record.synthesizer, record.model, record.version, record.attempts,
                            reused, record.source)


def _run_name() -> str:
    text = flow_run.parameters["task_text"]
    return f"synthesize/{text[:40]}"


@flow(name="synthesize", flow_run_name=_run_name, **FLOW_OPTIONS)
def synthesize(task_text: str, synthesizer: str = "grammar", regenerate: bool = False,
               answer_type: str = "bool", model: str | None = None, base_url: str | None = None,
               db_path: str | None = None) -> SynthesisSummary:
    """Write (or reuse) the program for a task and store it in the policy store.

    Args:
        task_text: the question, e.g. "Is there a red triangle left of a blue circle?".
        synthesizer: ``grammar`` (offline compiler), ``openai`` or ``transformers``.
        regenerate: write a new revision even when a stored program exists.
        answer_type: ``bool`` or ``str``.
        model: model name (openai) or local path (transformers); default FMP_LLM_MODEL.
        base_url: OpenAI-compatible endpoint; default FMP_LLM_BASE_URL.
        db_path: DuckDB policy store file; default ``.fmp/fmp.duckdb``.
    """
    logger = get_run_logger()
    db = policy_store_for(settings_for(db_path=db_path))
    summary = synthesize_task(db, task_text, synthesizer, regenerate=regenerate,
                              answer_type=answer_type, model=model, base_url=base_url)
    logger.info("%s program %s for %r (revision %d, %d tries, %s)", summary.synthesizer,
                summary.program_id, task_text, summary.revision, summary.attempts,
                "reused" if summary.reused else "new")
    return summary


def program_source_for(task_text: str, db_path: str | None = None, synthesizer: str = "grammar") -> str:
    """The stored (or newly synthesized) program source for a task, without Prefect."""
    db = policy_store_for(settings_for(db_path=db_path))
    return synthesize_task(db, task_text, synthesizer).source


def stream_info_for_task(stream: str, summary: SynthesisSummary) -> StreamInfo:
    """The StreamInfo that runs a synthesized program (and its one-call baseline) on a stream."""
    monolithic = (f"def execute_command(image):\n    return query(image, {json.dumps(summary.task_text)})"
                  ' == "yes"\n')
    return StreamInfo(stream=stream, query_id=f"synth-{summary.task_hash[:12]}",
                      question=summary.task_text, answer_type="bool", program=summary.source,
                      monolithic_program=monolithic)
