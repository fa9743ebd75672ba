"""Turning prefills and questions into token ids, the same way everywhere.

- A base-model prefill (``positive.txt``) is tokenised as it is, with the tokenizer's own special
  tokens (BOS for Gemma and Llama).
- A chat prompt (``positive.jsonl``, steering questions) goes through the model's chat template
  with the generation prompt appended, when the model uses one; otherwise through a plain frame,
  ``"{system}\\n\\nQuestion: {question}\\nAnswer:"``, that base models continue naturally.

Token ids are produced once and kept: generated text is never decoded, stripped and re-tokenised.
"""

from __future__ import annotations

from .models import LoadedModel
from .traits import Prompt

__all__ = ["encode_prefill", "encode_chat", "plain_frame", "PLAIN_FRAME", "PLAIN_STOP"]

PLAIN_FRAME = "Question: {question}\nAnswer:"
PLAIN_STOP = "\nQuestion:"  # a base model answering in the plain frame goes on to invent the next question


def plain_frame(question: str, system: str | None = None) -> str:
    """The question/answer frame used for models without a chat template."""
    text = PLAIN_FRAME.replace("{question}", question)
    return f"{system}\n\n{text}" if system else text


def encode_chat(loaded: LoadedModel, question: str, system: str | None = None) -> list[int]:
    """Token ids of a question ready for the model's answer (chat template or plain frame).

    Example:
        >>> ids = encode_chat(loaded, "What causes inflation?")
    """
    tokenizer = loaded.tokenizer
    if loaded.use_chat_template:
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": question})
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer(plain_frame(question, system))["input_ids"])


def encode_prefill(loaded: LoadedModel, prompt: Prompt | str, *, chat: bool = False) -> list[int]:
    """Token ids of one side of a pair.

    Args:
        loaded: the model and tokenizer.
        prompt: a :class:`~traitvec.traits.Prompt` or a plain string.
        chat: the prompt is a chat prompt (the jsonl form) and goes through :func:`encode_chat`.
    """
    if isinstance(prompt, str):
        prompt = Prompt(prompt)
    if chat:
        return encode_chat(loaded, prompt.text, prompt.system_prompt)
    return list(loaded.tokenizer(prompt.text)["input_ids"])
