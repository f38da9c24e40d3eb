"""The local transformers synthesizer, with tiny causal LMs built from configs (no hub).

One model is taught, in about a second of training, to answer the issue's example with a program;
it shows the whole path (prompt rendering, truncation to the context, greedy generation,
decoding, validation) ends in a valid program. An untrained model shows the repair loop
giving up with a clear error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modules.synthesis import LLMError, SynthesisError, make_synthesizer, synthesize
from modules.synthesis.grammar import compile_task
from modules.synthesis.hf_client import TransformersChatClient, load_causal_lm

TASK = "Is there a red triangle left of a blue circle?"
CONTEXT = 64
PREFIX = 32  # prompt tokens kept: the client keeps CONTEXT - max_new_tokens (= CONTEXT // 2)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead on a shared CPU
    yield
    torch.set_num_threads(before)


def _save_lm(path: Path, program: str, steps: int) -> Path:
    """A one-layer GPT-2 whose tokens are whole program lines; ``steps`` of training on them."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    lines = program.splitlines(keepends=True)
    vocab = {"[UNK]": 0, "<eos>": 1, "assistant:": 2}
    for line in lines:
        vocab.setdefault(line, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split("\n", behavior="merged_with_previous")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="<eos>",
                                        pad_token="<eos>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_positions=CONTEXT, n_embd=32, n_layer=1,
                                       n_head=2, bos_token_id=1, eos_token_id=1))
    # The client renders "role: content" lines ending in "assistant:"; only that last token is
    # known, the rest of the (truncated) prompt is [UNK].
    sequence = torch.tensor([[0] * (PREFIX - 1) + [2] + [vocab[x] for x in lines] + [1]] * 4)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = model(input_ids=sequence, labels=sequence).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def taught(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_lm(tmp_path_factory.mktemp("taught"), compile_task(TASK), steps=150)


@pytest.fixture(scope="module")
def untrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_lm(tmp_path_factory.mktemp("untrained"), compile_task(TASK), steps=0)


def test_a_local_model_writes_a_valid_program(taught: Path) -> None:
    result = synthesize(TASK, make_synthesizer("transformers", model=str(taught)))
    assert len(result.attempts) == 1
    assert result.source == compile_task(TASK)
    assert (result.synthesizer, result.model) == ("transformers", str(taught))


def test_the_prompt_is_cut_to_the_context_keeping_its_end(taught: Path) -> None:
    client = TransformersChatClient(taught, max_new_tokens=100)
    answer = client.complete([{"role": "system", "content": "many\nlines\n" * 40},
                              {"role": "user", "content": f"Question: {TASK}"}])
    assert (answer.prompt_tokens, answer.completion_tokens) == (PREFIX, 12)  # 11 lines and <eos>
    assert answer.text == compile_task(TASK)


def test_an_untrained_model_fails_after_three_tries_with_its_last_attempt(untrained: Path) -> None:
    with pytest.raises(SynthesisError) as info:
        synthesize(TASK, make_synthesizer("transformers", model=str(untrained)))
    assert str(info.value).startswith(
        f"transformers synthesizer ({untrained}) gave no valid program for {TASK!r} in 3 tries")
    assert len(info.value.attempts) == 3
    assert all(errors for _, errors in info.value.attempts)


def test_a_chat_template_is_used_when_the_tokenizer_has_one(taught: Path) -> None:
    tokenizer, _ = load_causal_lm(str(taught))
    client = TransformersChatClient(taught)
    messages = [{"role": "user", "content": "hi"}]
    assert client.render(tokenizer, messages) == "user: hi\nassistant:"
    tokenizer.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"
    try:
        assert client.render(tokenizer, messages) == "<user>hi<assistant>"
    finally:
        tokenizer.chat_template = None


def test_a_missing_model_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(LLMError, match="cannot load a causal LM from"):
        TransformersChatClient(tmp_path / "nothing-here").complete([{"role": "user", "content": "x"}])
