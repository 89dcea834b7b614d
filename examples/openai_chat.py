"""Streams a chat completion from enclave-cloud with the official OpenAI Python SDK.

`ecloud proxy --listen 127.0.0.1:8787` is the endpoint: it picks and verifies a node, seals
the request to the node's attested enclave, pays through a payment channel and checks the
signed response. Nothing here is specific to enclave-cloud but the base URL.

    python3 examples/openai_chat.py http://127.0.0.1:8787/v1 gemma "Say hello"
"""

import sys

import openai

base_url, model, prompt = sys.argv[1:4]
client = openai.OpenAI(base_url=base_url, api_key="unused-the-proxy-pays")
stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": prompt}],
    max_tokens=40,
    stream=True,
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
print()
