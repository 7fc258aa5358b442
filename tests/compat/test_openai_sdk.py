"""The official `openai` SDK pointed at modelgate: chat, stream,
completions, embeddings, and errors raised as the SDK's own types."""

import array
import base64

import openai
import pytest
from openai import OpenAI


def client(base, path="/v1"):
    return OpenAI(base_url=base + path, api_key="client-key", max_retries=0, timeout=10)


def test_chat_completion(gateway):
    r = client(gateway).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "say hello to me"}], max_tokens=4
    )
    assert r.choices[0].message.content == "Hello from mock-llm token"
    assert r.model == "gpt-4o-mini"
    assert r.usage.prompt_tokens == 4
    assert r.usage.completion_tokens == 4
    assert r.usage.total_tokens == 8


def test_chat_stream(gateway):
    stream = client(gateway).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=5, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello from mock-llm token token"


def test_chat_stream_with_usage(gateway):
    stream = client(gateway).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "one two"}],
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0].total_tokens == 5


def test_completions(gateway):
    r = client(gateway).completions.create(model="davinci", prompt="once upon", max_tokens=2)
    assert r.choices[0].text == "Hello from"
    assert r.usage.completion_tokens == 2


def test_embeddings(gateway):
    r = client(gateway, "/embed/v1").embeddings.create(model="text-embedding-3-small", input=["a", "b", "c"])
    assert len(r.data) == 3
    assert len(r.data[0].embedding) == 8


EMBED_BASES = ["/embed/v1", "/builtin-embed/v1"]


def _floats(b64):
    return array.array("f", base64.b64decode(b64)).tolist()


@pytest.mark.parametrize("base", EMBED_BASES)
def test_embeddings_base64(gateway, base):
    """`encoding_format="base64"` asked for explicitly: the SDK hands the
    string back as sent; it is little-endian float32s of the mock's 8
    dimensions, non-zero, the same values the float format gives."""
    c = client(gateway, base)
    r = c.embeddings.create(model="text-embedding-3-small", input=["a", "b"], encoding_format="base64")
    f = c.embeddings.create(model="text-embedding-3-small", input=["a", "b"], encoding_format="float")
    assert len(r.data) == 2
    for b, fl in zip(r.data, f.data):
        assert isinstance(b.embedding, str), b.embedding
        v = _floats(b.embedding)
        assert len(v) == 8
        assert all(x != 0.0 for x in v), v
        assert v == pytest.approx(fl.embedding, abs=1e-6)
    assert r.data[0].embedding != r.data[1].embedding


@pytest.mark.parametrize("base", EMBED_BASES)
def test_embeddings_sdk_default(gateway, base):
    """The SDK's default: it asks for base64 and decodes it itself."""
    c = client(gateway, base)
    r = c.embeddings.create(model="text-embedding-3-small", input="hello")
    again = c.embeddings.create(model="text-embedding-3-small", input="hello")
    v = list(r.data[0].embedding)
    assert len(v) == 8
    assert all(isinstance(x, float) and x != 0.0 for x in v), v
    assert v == list(again.data[0].embedding)
    wide = c.embeddings.create(model="text-embedding-3-small", input="hello", dimensions=64)
    assert len(wide.data[0].embedding) == 64


def test_builtin_mock_provider(gateway):
    r = client(gateway, "/builtin/v1").chat.completions.create(model="x", messages=[])
    assert r.choices[0].message.content == "Hello from modelgate"
    stream = client(gateway, "/builtin/v1").chat.completions.create(model="x", messages=[], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello from modelgate"


def test_errors_are_sdk_exceptions(gateway):
    c = client(gateway)
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="m", messages=[], extra_headers={"x-mock-status": "400"})
    assert e.value.status_code == 400
    with pytest.raises(openai.InternalServerError) as e:
        c.chat.completions.create(model="m", messages=[], extra_headers={"x-mock-status": "503"})
    assert e.value.status_code == 503
    # A gateway-made error: no route.
    with pytest.raises(openai.NotFoundError) as e:
        c.images.generate(model="dall-e-3", prompt="x")
    assert "no route" in str(e.value) or "no Model API" in str(e.value)
