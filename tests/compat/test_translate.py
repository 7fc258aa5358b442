"""The official SDKs through translated Model APIs: the `anthropic` SDK
against a Model API whose only service speaks OpenAI, the `openai` SDK
against one whose only service speaks Anthropic. The SDKs' own parsers
must accept every byte (messages, streams, tool calls, errors)."""

import json

import anthropic
import openai
import pytest
from anthropic import Anthropic
from openai import OpenAI

ARGS = {"city": "Paris", "days": 3}
WEATHER_A = {
    "name": "get_weather",
    "description": "Current weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
WEATHER_O = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": WEATHER_A["input_schema"],
    },
}


def claude(base):
    return Anthropic(base_url=base + "/translated", api_key="client-key", max_retries=0, timeout=10)


def gpt(base):
    return OpenAI(base_url=base + "/via-claude/v1", api_key="client-key", max_retries=0, timeout=10)


# --- anthropic SDK → OpenAI-speaking service ---------------------------------


def test_anthropic_message(gateway):
    r = claude(gateway).messages.create(
        model="claude-sonnet",
        max_tokens=3,
        system="be brief",
        messages=[{"role": "user", "content": "hello there"}],
    )
    assert r.type == "message" and r.role == "assistant"
    assert r.content[0].type == "text"
    assert r.content[0].text == "Hello from mock-llm"
    assert r.stop_reason == "end_turn"
    assert r.usage.input_tokens == 4
    assert r.usage.output_tokens == 3


def test_anthropic_stream(gateway):
    with claude(gateway).messages.stream(
        model="claude-sonnet", max_tokens=4, messages=[{"role": "user", "content": "hi"}]
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Hello from mock-llm token"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4
    assert final.usage.input_tokens == 1


def test_anthropic_tool_use_round_trip(gateway):
    c = claude(gateway)
    question = {"role": "user", "content": "weather in Paris?"}
    r = c.messages.create(
        model="claude-sonnet",
        max_tokens=50,
        tools=[WEATHER_A],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[question],
    )
    assert r.stop_reason == "tool_use"
    call = r.content[0]
    assert call.type == "tool_use" and call.name == "get_weather"
    assert call.input == ARGS
    answer = c.messages.create(
        model="claude-sonnet",
        max_tokens=3,
        tools=[WEATHER_A],
        messages=[
            question,
            {"role": "assistant", "content": [call.model_dump(exclude_none=True)]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
        ],
    )
    assert answer.content[0].text == "Hello from mock-llm"
    assert answer.usage.input_tokens == 4  # "weather in Paris?" + "sunny"


def test_anthropic_tool_use_streamed(gateway):
    with claude(gateway).messages.stream(
        model="claude-sonnet",
        max_tokens=50,
        tools=[WEATHER_A],
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "weather?"}],
    ) as s:
        kinds = [e.type for e in s]
        final = s.get_final_message()
    assert "input_json" in kinds
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use"
    assert final.content[0].input == ARGS


def test_anthropic_errors(gateway):
    c = claude(gateway)
    msg = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.RateLimitError) as e:
        c.messages.create(model="m", max_tokens=3, messages=msg, extra_headers={"x-mock-status": "429"})
    assert e.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(anthropic.InternalServerError):
        c.messages.create(model="m", max_tokens=3, messages=msg, extra_headers={"x-mock-status": "500"})
    with pytest.raises(anthropic.BadRequestError) as e:
        c.messages.create(
            model="m", max_tokens=3, messages=[{"role": "user", "content": [{"type": "hologram"}]}]
        )
    assert "hologram" in str(e.value)


def test_anthropic_stream_cut_is_an_error(gateway):
    with pytest.raises(anthropic.APIStatusError) as e:
        with claude(gateway).messages.stream(
            model="m",
            max_tokens=5,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-mock-reset-after": "2"},
        ) as s:
            for _ in s:
                pass
    assert e.value.body["error"]["type"] == "api_error"


# --- openai SDK → Anthropic-only service --------------------------------------


def test_openai_chat(gateway):
    r = gpt(gateway).chat.completions.create(
        model="claude-sonnet",
        max_tokens=3,
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}],
    )
    assert r.object == "chat.completion"
    assert r.choices[0].message.content == "Hello from mock-llm"
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (4, 3, 7)


def test_openai_stream(gateway):
    stream = gpt(gateway).chat.completions.create(
        model="claude-sonnet", max_tokens=4, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from mock-llm token"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert all(c.usage is None for c in chunks)


def test_openai_stream_with_usage(gateway):
    stream = gpt(gateway).chat.completions.create(
        model="claude-sonnet",
        max_tokens=3,
        messages=[{"role": "user", "content": "one two"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = [c.usage for c in stream if c.usage]
    assert len(usage) == 1
    assert (usage[0].prompt_tokens, usage[0].completion_tokens) == (2, 3)


def test_openai_tool_round_trip(gateway):
    c = gpt(gateway)
    question = {"role": "user", "content": "weather in Paris?"}
    r = c.chat.completions.create(
        model="claude-sonnet",
        tools=[WEATHER_O],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        messages=[question],
    )
    assert r.choices[0].finish_reason == "tool_calls"
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == ARGS
    answer = c.chat.completions.create(
        model="claude-sonnet",
        max_tokens=3,
        tools=[WEATHER_O],
        messages=[
            question,
            r.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
    )
    assert answer.choices[0].message.content == "Hello from mock-llm"
    assert answer.usage.prompt_tokens == 4


def test_openai_tool_calls_streamed(gateway):
    stream = gpt(gateway).chat.completions.create(
        model="claude-sonnet",
        tools=[WEATHER_O],
        tool_choice="required",
        messages=[{"role": "user", "content": "weather?"}],
        stream=True,
    )
    name, args, ids = None, "", set()
    for chunk in stream:
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            assert tc.index == 0
            name = name or (tc.function and tc.function.name)
            args += (tc.function and tc.function.arguments) or ""
            if tc.id:
                ids.add(tc.id)
    assert name == "get_weather"
    assert json.loads(args) == ARGS
    assert len(ids) == 1


def test_openai_errors(gateway):
    c = gpt(gateway)
    msg = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="m", messages=msg, extra_headers={"x-mock-status": "429"})
    assert e.value.status_code == 429
    with pytest.raises(openai.InternalServerError):
        c.chat.completions.create(model="m", messages=msg, extra_headers={"x-mock-status": "500"})
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="m", messages=msg, n=2)
    assert "n greater than 1" in str(e.value)
