"""The official OpenAI Python SDK against `ecloud proxy` (worker/tests/paid_api_e2e.rs runs it).

Does, concurrently, streaming and non-streaming chat completions, then an embeddings call,
exactly as an application would (`openai.OpenAI(base_url=...)`). A transport under the SDK
records the exact bytes of each request body and response body (the full server-sent-event
text of a stream), so the Rust test can check each response's signature from the node
(`GET /v1/signature/{id}`) against what the SDK really sent and received.

Prints one JSON document on stdout: {"exchanges": [...], "chats": [...], "embeddings": ...}.
Usage: python3 openai_sdk_client.py BASE_URL CHAT_MODEL EMBEDDINGS_MODEL
"""

import base64
import json
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx2
import openai

RECORDS = []


class Tee(httpx2.SyncByteStream):
    """Passes a response body through, keeping a copy of every byte."""

    def __init__(self, inner, sink):
        self.inner = inner
        self.sink = sink

    def __iter__(self):
        for chunk in self.inner:
            self.sink.append(chunk)
            yield chunk

    def close(self):
        self.inner.close()


class RecordingTransport(httpx2.HTTPTransport):
    def handle_request(self, request):
        body = request.read()
        response = super().handle_request(request)
        record = {"path": request.url.path, "request": body, "chunks": [], "headers": response.headers}
        RECORDS.append(record)
        return httpx2.Response(
            response.status_code,
            headers=response.headers,
            stream=Tee(response.stream, record["chunks"]),
            extensions=response.extensions,
        )


def main():
    base_url, chat_model, embeddings_model = sys.argv[1:4]
    client = openai.OpenAI(
        base_url=base_url,
        api_key="unused-the-proxy-pays-with-a-channel",
        http_client=httpx2.Client(transport=RecordingTransport(), timeout=600),
        max_retries=0,
    )
    messages = lambda i: [{"role": "user", "content": f"Count from {i} to {i + 5}."}]

    def streamed(i):
        stream = client.chat.completions.create(
            model=chat_model,
            messages=messages(i),
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage, finish, chunk_id, content_chunks = "", None, None, None, 0
        for chunk in stream:
            chunk_id = chunk.id
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.content:
                    text += choice.delta.content
                    content_chunks += 1
                if choice.finish_reason:
                    finish = choice.finish_reason
        return {
            "id": chunk_id,
            "stream": True,
            "text": text,
            "content_chunks": content_chunks,
            "finish_reason": finish,
            "usage": usage.model_dump() if usage else None,
        }

    def whole(i):
        completion = client.chat.completions.create(
            model=chat_model, messages=messages(i), max_tokens=10
        )
        return {
            "id": completion.id,
            "stream": False,
            "text": completion.choices[0].message.content,
            "finish_reason": completion.choices[0].finish_reason,
            "usage": completion.usage.model_dump(),
        }

    with ThreadPoolExecutor(max_workers=4) as pool:
        jobs = [pool.submit(streamed, 1), pool.submit(whole, 2), pool.submit(streamed, 3), pool.submit(whole, 4)]
        chats = [j.result() for j in jobs]

    embedding = client.embeddings.create(model=embeddings_model, input=["a private embedding"])
    out = {
        "chats": chats,
        "embeddings": {
            "dimensions": len(embedding.data[0].embedding),
            "usage": embedding.usage.model_dump(),
        },
        "exchanges": [
            {
                "path": r["path"],
                "response_id": r["headers"].get("x-ecloud-response-id"),
                "request": base64.b64encode(r["request"]).decode(),
                "response": base64.b64encode(b"".join(r["chunks"])).decode(),
            }
            for r in RECORDS
        ],
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
