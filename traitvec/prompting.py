"""Turning prefills and questions into token ids, the same way everywhere.

- A base-model prefill (``positive.txt``) is tokenised as it is, with the tokenizer's own special
  tokens (BOS for Gemma and Llama).
- A chat prompt (``positive.jsonl``, steering questions) goes through the model's chat template
  with the generation prompt appended, when the model uses one; otherwise through a plain frame,
  ``"{system}\\n\\nQuestion: {question}\\nAnswer:"``, that base models continue naturally.
  Templates that read ``enable_thinking`` (Qwen3-style) get the model's setting
  (:attr:`~traitvec.models.LoadedModel.enable_thinking`, off by default), so answers start
  without a reasoning block unless the experiment asks for one.
- A conversation (``{"messages": [...]}`` rows, ending with the assistant's answer) is rendered
  whole by :func:`encode_conversation`, which also says exactly which tokens are the final answer
  (what the ``answer-mean`` and ``answer-first-k`` capture positions read).

Token ids are produced once and kept: generated text is never decoded, stripped and re-tokenised.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2

from .conversations import Message, check_answer, conversation_text, message_text
from .errors import ConfigError, ModelError
from .models import LoadedModel
from .traits import Prompt

__all__ = [
    "encode_prefill",
    "encode_chat",
    "encode_conversation",
    "EncodedConversation",
    "plain_frame",
    "PLAIN_FRAME",
    "PLAIN_STOP",
]

logger = logging.getLogger(__name__)

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
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **loaded.template_kwargs
        )
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer(plain_frame(question, system))["input_ids"])


def encode_prefill(loaded: LoadedModel, prompt: Prompt | str, *, chat: bool = False) -> list[int]:
    """Token ids of one side of a pair.

    Args:
        loaded: the model and tokenizer.
        prompt: a :class:`~traitvec.traits.Prompt` or a plain string.
        chat: the prompt is a chat prompt (the jsonl form) and goes through :func:`encode_chat`.
            A conversation prompt is always rendered whole, answer included
            (:func:`encode_conversation`).
    """
    if isinstance(prompt, str):
        prompt = Prompt(prompt)
    if prompt.is_conversation:
        return list(encode_conversation(loaded, prompt.messages).input_ids)
    if chat:
        return encode_chat(loaded, prompt.text, prompt.system_prompt)
    return list(loaded.tokenizer(prompt.text)["input_ids"])


_ANSWER_MARK = "\ue000traitvec-answer\ue000"  # stands in for the answer to find where the template puts it


@dataclass(frozen=True)
class EncodedConversation:
    """A conversation rendered for the model, with the exact token range of its final answer.

    Attributes:
        input_ids: token ids of the whole conversation, answer included.
        answer_start: index in ``input_ids`` of the answer's first token.
        answer_end: one past its last token: ``input_ids[answer_start:answer_end]`` is the answer.
        text: the rendered text (chat template output, or the plain transcript).
        answer_chars: ``(start, end)``, the answer's character range in ``text``.
        templated: True when the model's chat template rendered it, False for the plain transcript.
    """

    input_ids: tuple[int, ...]
    answer_start: int
    answer_end: int
    text: str
    answer_chars: tuple[int, int]
    templated: bool

    def answer_positions(self, first_k: int | None = None) -> range:
        """Token indices of the answer (``answer-mean``), or of its first ``first_k`` tokens
        (``answer-first-k``; fewer when the answer is shorter).

        Example:
            >>> hidden[encoded.answer_positions(first_k=8)].mean(0)
        """
        if first_k is None:
            return range(self.answer_start, self.answer_end)
        if first_k < 1:
            raise ConfigError(
                f"answer_positions(first_k=) = {first_k}; expected a positive number of answer tokens",
                setting="answer_positions(first_k=)",
            )
        return range(self.answer_start, min(self.answer_end, self.answer_start + first_k))


def encode_conversation(
    loaded: LoadedModel,
    messages: Sequence[Message] | Prompt,
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> EncodedConversation:
    """Render a conversation ending with the assistant's answer and find the answer's tokens.

    With a chat template, the conversation is rendered whole (no generation prompt). A template
    that mentions ``tool_calls`` receives them natively (arguments parsed from their JSON text, as
    transformers' templates expect); for any other template the calls are written into the
    message's text (``tool_call: NAME`` / ``arguments: ARGS``). ``tools`` (function schemas) are
    passed to the template. Without a template the plain transcript
    (:func:`~traitvec.conversations.conversation_text`) is tokenised with the tokenizer's special
    tokens.

    The answer is located by rendering the same conversation with a marker in place of the
    answer: what the real rendering has between the marker's prefix and suffix is the answer as
    the template writes it (tool calls included). Its tokens are those whose characters overlap
    that range, so a token that straddles the boundary (``" Sure"`` after ``"Assistant:"``) counts
    as answer.

    Args:
        loaded: the model and tokenizer.
        messages: the conversation (or a conversation :class:`~traitvec.traits.Prompt`).
        tools: optional tool schemas for templates that render them.

    Raises:
        TraitDataError: the conversation does not end with an assistant answer.
        ModelError: the chat template cannot render it, or does not show the answer.

    Example:
        >>> enc = encode_conversation(loaded, trait.positive[0])
        >>> loaded.tokenizer.decode(enc.input_ids[enc.answer_start : enc.answer_end])
        'Let me check the file first.'
    """
    convo = tuple(messages.messages if isinstance(messages, Prompt) else messages)
    if not convo:
        raise ModelError("encode_conversation got no messages; pass a conversation ending with the answer")
    check_answer(convo)
    if loaded.use_chat_template:
        text, span = _render_template(loaded, convo, tools)
    else:
        text = conversation_text(convo)
        span = (len(text) - len(message_text(convo[-1])), len(text))
    ids, start, end = _token_span(loaded, text, span, add_special=not loaded.use_chat_template)
    return EncodedConversation(tuple(ids), start, end, text, span, loaded.use_chat_template)


def _render_template(
    loaded: LoadedModel, convo: tuple[Message, ...], tools: Sequence[Mapping[str, Any]] | None
) -> tuple[str, tuple[int, int]]:
    template = loaded.tokenizer.chat_template
    native = "tool_calls" in (template if isinstance(template, str) else json.dumps(template))
    context = [_template_message(m, native) for m in convo[:-1]]
    full = _apply(loaded, [*context, _template_message(convo[-1], native)], tools)
    marked = _apply(loaded, [*context, {"role": "assistant", "content": _ANSWER_MARK}], tools)
    if marked.count(_ANSWER_MARK) == 1:
        prefix, suffix = marked.split(_ANSWER_MARK)
        if full.startswith(prefix) and full.endswith(suffix) and len(prefix) + len(suffix) < len(full):
            return full, (len(prefix), len(full) - len(suffix))
    content = convo[-1].content
    if content and content in full:  # the template renders earlier turns differently around the marker
        start = full.rindex(content)
        logger.debug("%s: answer located by its text, not by the marker", loaded.name)
        return full, (start, start + len(content))
    raise ModelError(
        f"cannot tell where the chat template of {loaded.name} puts the final answer of this conversation; "
        "load the model with chat_template=False to use the plain transcript frame"
    )


def _template_message(message: Message, native: bool) -> dict[str, Any]:
    if message.role != "assistant" or not message.tool_calls:
        out: dict[str, Any] = {"role": message.role, "content": message.content or ""}
    elif native:
        calls = []
        for call in message.tool_calls:
            entry = call.to_dict()
            entry["function"]["arguments"] = _arguments(call.arguments)
            calls.append(entry)
        out = {"role": "assistant", "content": message.content or "", "tool_calls": calls}
    else:
        out = {"role": "assistant", "content": message_text(message)}
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out


def _arguments(text: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value if isinstance(value, dict) else text


def _apply(loaded: LoadedModel, messages: list[dict[str, Any]], tools: Sequence[Mapping[str, Any]] | None) -> str:
    try:
        text = loaded.tokenizer.apply_chat_template(
            messages,
            tools=list(tools) if tools else None,
            tokenize=False,
            add_generation_prompt=False,
            **loaded.template_kwargs,
        )
    except (jinja2.TemplateError, TypeError, ValueError) as err:
        raise ModelError(
            f"the chat template of {loaded.name} cannot render this conversation ({type(err).__name__}: {err}); "
            "load the model with chat_template=False to use the plain transcript frame"
        ) from None
    return str(text)


def _token_span(
    loaded: LoadedModel, text: str, span: tuple[int, int], *, add_special: bool
) -> tuple[list[int], int, int]:
    tokenizer = loaded.tokenizer
    begin, end = span
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(text, add_special_tokens=add_special, return_offsets_mapping=True)
        ids = [int(t) for t in encoded["input_ids"]]
        inside = [i for i, (s, e) in enumerate(encoded["offset_mapping"]) if s < end and e > begin]
    else:  # no character offsets: tokenise the three pieces apart, so the boundaries are exact
        head = tokenizer(text[:begin], add_special_tokens=add_special)["input_ids"]
        body = tokenizer(text[begin:end], add_special_tokens=False)["input_ids"]
        tail = tokenizer(text[end:], add_special_tokens=False)["input_ids"] if end < len(text) else []
        ids = [int(t) for t in [*head, *body, *tail]]
        inside = list(range(len(head), len(head) + len(body)))
    if not inside:
        raise ModelError(f"the final answer of this conversation has no tokens under the tokenizer of {loaded.name}")
    return ids, inside[0], inside[-1] + 1
