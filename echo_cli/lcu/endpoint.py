"""The optional OpenAI-compatible chat endpoint shared by LAU (emotion text) and HBCU
(behaviour descriptions). Only called when a config names an endpoint: off by default,
and nothing else in the tool touches the network."""
from __future__ import annotations

import json
import os
import urllib.request


def chat(cfg, system: str, content) -> str:
    """POST one chat completion; `cfg` has endpoint, model, api_key_env, timeout_s.
    Returns the assistant message text."""
    body = {"model": cfg.model, "temperature": 0,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": content}]}
    req = urllib.request.Request(cfg.endpoint.rstrip("/") + "/chat/completions",
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {os.environ.get(cfg.api_key_env, '')}"})
    with urllib.request.urlopen(req, timeout=cfg.timeout_s) as r:
        out = json.loads(r.read().decode())
    return out["choices"][0]["message"]["content"]
