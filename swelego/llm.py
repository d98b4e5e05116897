"""A thin client for any OpenAI-compatible chat endpoint (vLLM, SGLang, hosted APIs).
Pipeline stages share it so retries, error messages and token accounting behave the same everywhere."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import openai

from swelego.config import doc_field
from swelego.errors import SwelegoError


@dataclass
class LLMConfig:
    """Where and how to ask a chat model.

    base_url: endpoint root, e.g. ``http://localhost:8000/v1``.
    model: model name the endpoint serves.
    api_key_env: environment variable holding the key; endpoints without auth get ``EMPTY``.
    temperature: sampling temperature for every call unless overridden.
    max_tokens: completion length cap per call.
    timeout: seconds to wait for one HTTP request before it counts as failed.
    max_retries: retries on 429, 5xx, connection errors and timeouts (exponential backoff by the SDK).
    seed: sampling seed forwarded to endpoints that honour it; None leaves sampling unseeded.
    """

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.7
    max_tokens: int = 2048
    timeout: float = 120.0
    max_retries: int = 4
    seed: int | None = None


@dataclass
class EndpointOptions:
    """The chat endpoint of a data step that can use an LLM (bug strategies, problem statements
    written from a diff, environment repairs); part of the configs of those steps."""

    llm_base_url: str | None = doc_field(
        "OpenAI-compatible endpoint for the LLM steps (bug strategies, problem statements, environment repairs); "
        "null = they are skipped or templated (the data build: llm.base_url).", default=None)
    llm_model: str | None = doc_field("Model name at llm_base_url (the data build: llm.model).", default=None)
    llm_key_env: str = doc_field("Environment variable with llm_base_url's key (the data build: llm.api_key_env).",
                                 default="OPENAI_API_KEY")

    def llm(self):
        return client_from_options(self.llm_base_url, self.llm_model, self.llm_key_env)


# The command-line flags of EndpointOptions' fields (swelego.config.config_flags).
ENDPOINT_FLAGS = [("llm_base_url", "--llm-base-url", {}), ("llm_model", "--llm-model", {}),
                  ("llm_key_env", "--llm-key-env", {})]


class LLMClient:
    """Chat completions with one-line errors and running call/token counters."""

    def __init__(self, config: LLMConfig):
        self.config = config
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._client = openai.OpenAI(
            base_url=config.base_url,
            # Local servers usually ignore the key, but the SDK refuses to start without one.
            api_key=os.environ.get(config.api_key_env) or "EMPTY",
            timeout=config.timeout,
            max_retries=config.max_retries,
        )

    def complete(self, messages: list[dict], **overrides: Any) -> str:
        """The first choice's text for `messages`; `overrides` replace config sampling fields per call."""
        message, _ = self.chat(messages, **overrides)
        return message.get("content") or ""

    def chat(self, messages: list[dict], **overrides: Any) -> tuple[dict, dict]:
        """The first choice's message (a plain dict; `tool_calls` when the endpoint returned
        native calls) and this call's usage `{prompt_tokens, completion_tokens}`.
        `overrides` are request fields (temperature, top_p, tools, stop, logprobs, ...);
        None values are left out."""
        params: dict[str, Any] = {
            "model": self.config.model,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        if self.config.seed is not None:
            params["seed"] = self.config.seed
        params.update({k: v for k, v in overrides.items() if v is not None})
        self.calls += 1
        try:
            response = self._client.chat.completions.create(messages=messages, **params)
        except openai.APIError as exc:
            # The SDK has already retried; what is left is for the user to fix (endpoint down, bad model, ...).
            detail = " ".join(str(exc).split())[:200]
            raise SwelegoError(
                f"LLM endpoint {self.config.base_url} (model {self.config.model}) failed "
                f"(up to {self.config.max_retries} retries): {type(exc).__name__}: {detail}"
            ) from exc
        usage = getattr(response, "usage", None)
        counts = {"prompt_tokens": 0, "completion_tokens": 0}
        if usage is not None:
            counts = {"prompt_tokens": usage.prompt_tokens or 0, "completion_tokens": usage.completion_tokens or 0}
            self.prompt_tokens += counts["prompt_tokens"]
            self.completion_tokens += counts["completion_tokens"]
        if not response.choices:
            return {"role": "assistant", "content": ""}, counts
        choice = response.choices[0]
        message = choice.message.model_dump(exclude_none=True)
        message["role"] = "assistant"
        if getattr(choice, "logprobs", None) is not None:
            message["logprobs"] = choice.logprobs.model_dump(exclude_none=True)
        return message, counts


def client_from_options(
    base_url: str | None, model: str | None, api_key_env: str = "OPENAI_API_KEY", **kw: Any
) -> LLMClient | None:
    """A client when both endpoint and model are given, else None (callers then skip LLM strategies)."""
    if not base_url or not model:
        return None
    return LLMClient(LLMConfig(base_url=base_url, model=model, api_key_env=api_key_env, **kw))
