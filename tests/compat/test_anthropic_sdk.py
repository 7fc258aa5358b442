"""The official `anthropic` SDK pointed at a native Anthropic Model API."""

from anthropic import Anthropic


def client(base):
    return Anthropic(base_url=base + "/anthropic", api_key="client-key", max_retries=0, timeout=10)


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
