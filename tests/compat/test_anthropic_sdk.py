"""The official `anthropic` SDK pointed at a native Anthropic Model API."""

import pytest
from anthropic import Anthropic


def client(base, path="/anthropic"):
    return Anthropic(base_url=base + path, api_key="client-key", max_retries=0, timeout=10)


def test_message(gateway):
    r = client(gateway).messages.create(
        model="claude-sonnet", max_tokens=3, messages=[{"role": "user", "content": "hello there"}]
    )
    assert r.content[0].text == "Hello from mock-llm"
    assert r.usage.input_tokens == 2
    assert r.usage.output_tokens == 3
    assert r.stop_reason == "end_turn"


def test_stream(gateway):
    with client(gateway).messages.stream(
        model="claude-sonnet", max_tokens=4, messages=[{"role": "user", "content": "hi"}]
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Hello from mock-llm token"
    assert final.usage.output_tokens == 4


@pytest.mark.parametrize("path", ["/anthropic", "/builtin-anthropic"])
def test_stream_usage(gateway, path):
    """Usage where Anthropic puts it: `message_start.message.usage` with
    input and output tokens, `message_delta.usage` with the final output
    and the input (and cache) counts again; the final message has both."""
    c = client(gateway, path)
    events = list(
        c.messages.create(
            model="claude-sonnet",
            max_tokens=3,
            stream=True,
            messages=[{"role": "user", "content": "one two three four"}],
        )
    )
    start = next(e for e in events if e.type == "message_start")
    delta = next(e for e in events if e.type == "message_delta")
    assert start.message.usage.input_tokens == 4
    assert delta.usage.output_tokens == 3
    assert delta.usage.input_tokens == 4
    assert delta.usage.cache_creation_input_tokens == 0
    assert delta.usage.cache_read_input_tokens == 0
    with c.messages.stream(
        model="claude-sonnet", max_tokens=3, messages=[{"role": "user", "content": "one two three four"}]
    ) as s:
        final = s.get_final_message()
    assert final.usage.input_tokens == 4
    assert final.usage.output_tokens == 3
