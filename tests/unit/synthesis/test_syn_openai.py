"""The OpenAI-compatible client and the repair loop, against a loopback replay server."""

from __future__ import annotations

import pytest

from modules.synthesis import LLMError, LLMSynthesizer, SynthesisError, synthesize
from modules.synthesis.api import PROMPT_VERSION
from modules.synthesis.openai_client import OpenAIChatClient, resolve_api_key
from modules.synthesis.replay_server import ReplayChatServer, Reply

TASK = "Is there a red triangle left of a blue circle?"
VALID = '''Here is the program:
```python
def execute_command(image):
    if not exists(image, "triangle"):
        return False
    for t in find(image, "triangle"):
        for c in find(image, "circle"):
            if t.left_of(c) and verify_property(t, "triangle", "red") and verify_property(c, "circle", "blue"):
                return True
    return False
```'''
USES_EVAL = "```python\ndef execute_command(image):\n    return eval('True')\n```"
TYPE_ERROR = "```python\ndef execute_command(image):\n    return query(image, 'is there a red triangle?')\n```"


def _client(url: str, **kw) -> OpenAIChatClient:
    return OpenAIChatClient(url, "replay-model", api_key_env=None, backoff_s=0.01, **kw)


def test_invalid_answers_are_sent_back_with_their_errors_until_one_validates() -> None:
    with ReplayChatServer([USES_EVAL, TYPE_ERROR, VALID]) as server:
        result = synthesize(TASK, LLMSynthesizer("openai", _client(server.url)))
    assert [a.errors for a in result.attempts] == [
        ["line 2, col 11: unknown function `eval`; programs may call ['abs', 'count', 'exists', "
         "'find', 'len', 'llm_query', 'max', 'min', 'query', 'read_text', "
         "'verify_property']"],
        ['line 2, col 4: the program must return a bool; this returns a str (compare it, e.g. '
         '`query(patch, question) == "yes"`)'],
        []]
    assert (result.synthesizer, result.model, result.version) == ("openai", "replay-model", PROMPT_VERSION)
    assert result.source.startswith("def execute_command(image):\n    if not exists(image, \"triangle\")")
    third = server.requests[2]["body"]
    assert third["model"] == "replay-model" and third["temperature"] == 0.0
    roles = [m["role"] for m in third["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert third["messages"][1]["content"] == f"Question: {TASK}"
    assert third["messages"][2]["content"] == USES_EVAL
    assert "unknown function `eval`" in third["messages"][3]["content"]
    assert "must return a bool" in third["messages"][5]["content"]
    assert "verify_property(patch, name, property) -> bool" in third["messages"][0]["content"]


def test_three_invalid_answers_end_in_a_clear_error_with_the_last_attempt() -> None:
    with ReplayChatServer([USES_EVAL, USES_EVAL, TYPE_ERROR, VALID]) as server:
        with pytest.raises(SynthesisError) as info:
            synthesize(TASK, LLMSynthesizer("openai", _client(server.url)))
    assert len(server.requests) == 3  # the fourth (valid) answer is never asked for
    message = str(info.value)
    assert message.startswith(f"openai synthesizer (replay-model) gave no valid program for {TASK!r} in 3 tries")
    assert "return query(image, 'is there a red triangle?')" in message
    assert "must return a bool" in message
    assert [len(errors) for _, errors in info.value.attempts] == [1, 1, 1]


def test_transient_errors_are_retried_and_usage_is_reported() -> None:
    script = [Reply(status=503, body="busy"), Reply(status=429, body="slow down", headers={"retry-after": "0"}),
              Reply(content="hello", usage=(123, 7))]
    with ReplayChatServer(script) as server:
        client = _client(server.url)
        answer = client.complete([{"role": "user", "content": "hi"}])
    assert (answer.text, answer.prompt_tokens, answer.completion_tokens) == ("hello", 123, 7)
    assert client.retries == 2


def test_persistent_server_errors_give_up_after_the_retries() -> None:
    with ReplayChatServer([Reply(status=502, body="bad gateway")] * 5) as server:
        client = _client(server.url, max_retries=2)
        with pytest.raises(LLMError, match=r"HTTP 502: bad gateway"):
            client.complete([{"role": "user", "content": "hi"}])
    assert len(server.requests) == 3


def test_an_auth_error_is_not_retried_and_says_so() -> None:
    with ReplayChatServer([Reply(status=401, body='{"error": "invalid key"}')]) as server:
        with pytest.raises(LLMError, match=r"HTTP 401 \(check the API key\)"):
            _client(server.url).complete([{"role": "user", "content": "hi"}])
    assert len(server.requests) == 1


def test_a_reply_without_choices_is_an_error_naming_the_endpoint() -> None:
    with ReplayChatServer([Reply(body='{"object": "error"}')]) as server:
        with pytest.raises(LLMError, match=r"/v1/chat/completions: reply has no choices\[0\]"):
            _client(server.url).complete([{"role": "user", "content": "hi"}])


def test_an_unreachable_endpoint_fails_after_retries() -> None:
    with ReplayChatServer([]) as server:
        url = server.url
    client = OpenAIChatClient(url, "m", api_key_env=None, max_retries=1, backoff_s=0.01, timeout_s=2)
    with pytest.raises(LLMError, match="no answer after 2 tries: ConnectError"):
        client.complete([{"role": "user", "content": "hi"}])


def test_the_api_key_comes_from_the_environment_and_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMP_TEST_KEY", "sk-test")
    with ReplayChatServer(["ok"]) as server:
        OpenAIChatClient(server.url, "m", api_key_env="FMP_TEST_KEY").complete([{"role": "user", "content": "x"}])
    assert server.requests[0]["headers"]["authorization"] == "Bearer sk-test"


def test_the_api_key_comes_from_the_argument_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMP_TEST_KEY", "sk-env")
    assert resolve_api_key("explicit", "FMP_TEST_KEY") == "explicit"
    assert resolve_api_key(None, "FMP_TEST_KEY") == "sk-env"
    assert resolve_api_key(None, "FMP_UNSET_KEY") is None
    assert resolve_api_key(None, None) is None


def _stored_secrets(monkeypatch: pytest.MonkeyPatch, stored: dict[str, str]) -> list[str]:
    """Prefect's Secret.load answering from ``stored``; returns the names asked for."""
    from prefect.blocks.system import Secret

    asked: list[str] = []

    class _Stored:
        def __init__(self, value: str) -> None:
            self.value = value

        def get(self) -> str:
            return self.value

    def load(cls, name: str) -> _Stored:
        asked.append(name)
        if name not in stored:
            raise ValueError(f"Unable to find block document named {name}")
        return _Stored(stored[name])

    monkeypatch.setattr(Secret, "load", classmethod(load))
    return asked


def test_the_flows_load_a_prefect_secret_block_when_the_variable_is_unset(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.secrets import api_key_for, synthesizer_api_key

    asked = _stored_secrets(monkeypatch, {"llm-key": "sk-from-block"})
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert api_key_for("OPENAI_API_KEY", "llm-key") == "sk-from-block"
    assert api_key_for("OPENAI_API_KEY", None) is None
    with pytest.raises(LLMError, match="Prefect Secret block 'nope' cannot be loaded"):
        api_key_for("OPENAI_API_KEY", "nope")
    monkeypatch.setenv("FMP_LLM_SECRET_BLOCK", "llm-key")
    assert synthesizer_api_key("openai") == "sk-from-block"
    assert synthesizer_api_key("grammar") is None
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")  # the variable wins; the block is not read
    asked.clear()
    assert api_key_for("OPENAI_API_KEY", "llm-key") is None and synthesizer_api_key("openai") is None
    assert asked == []


def test_the_synthesizer_and_the_openai_backend_send_the_key_from_the_block(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.secrets import synthesizer_api_key, with_api_keys
    from modules.catalog import FakeSpec, OpenAISpec
    from modules.registry import Registry
    from modules.synthesis import make_synthesizer

    _stored_secrets(monkeypatch, {"llm-key": "sk-from-block"})
    monkeypatch.delenv("FMP_TEST_UNSET", raising=False)
    monkeypatch.setenv("FMP_LLM_SECRET_BLOCK", "llm-key")
    monkeypatch.setenv("FMP_LLM_API_KEY_ENV", "FMP_TEST_UNSET")
    with ReplayChatServer(["ok"]) as server:
        writer = make_synthesizer("openai", model="m", base_url=server.url,
                                  api_key=synthesizer_api_key("openai"))
        writer.client.complete([{"role": "user", "content": "x"}])  # type: ignore[attr-defined]
    assert server.requests[0]["headers"]["authorization"] == "Bearer sk-from-block"

    spec = OpenAISpec(name="vlm", functions=["query"], base_url="http://localhost:1/v1", model="m",
                      api_key_env="FMP_TEST_UNSET", secret_block="llm-key")
    fake = FakeSpec(name="fake", functions=["query"])
    plain = Registry([fake, spec.model_copy(update={"secret_block": None})])
    assert with_api_keys(plain) is plain  # nothing to load
    keyed = with_api_keys(Registry([fake, spec]))
    vlm = keyed.spec("vlm")
    assert isinstance(vlm, OpenAISpec) and vlm.api_key is not None
    assert vlm.api_key.get_secret_value() == "sk-from-block" and "sk-from-block" not in repr(vlm)
    from modules.backends.openai_compat import OpenAIBackend

    backend = OpenAIBackend(vlm)
    backend.setup()
    assert backend._client.api_key == "sk-from-block"


def test_only_modules_tasks_imports_prefect_in_modules() -> None:
    import ast
    from pathlib import Path

    import modules

    root = Path(modules.__file__).parent
    importers = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "prefect" or n.startswith("prefect.") for n in names):
                importers.append(path.relative_to(root).as_posix())
    assert sorted(set(importers)) == ["tasks.py"]


def test_a_base_url_without_a_scheme_is_rejected() -> None:
    with pytest.raises(LLMError, match="must start with http:// or https://"):
        OpenAIChatClient("localhost:8000/v1", "m")
