"""Conversations: OpenAI/ChatML messages as frozen values, validated in one place.

The conversation form of a trait (``positive.jsonl`` rows ``{"messages": [...]}``) and the
preference-data importer (:mod:`traitvec.preference`) read messages through :func:`parse_messages`,
so both accept and refuse exactly the same things:

- ``role`` is one of ``system``, ``user``, ``assistant``, ``tool``;
- ``content`` is a string; only an assistant message with ``tool_calls`` may have ``null`` (or no)
  content;
- ``tool_calls`` (assistant only) is a list of ``{"id", "type": "function", "function": {"name",
  "arguments"}}``; ``arguments`` is the JSON text of the call (an object is accepted and kept as
  its JSON text); ``id`` is optional;
- ``tool_call_id`` (tool only) and ``name`` are optional strings; other keys are refused, with the
  list of the ones that are read.

:func:`check_answer` adds the rules of a contrastive example: the last message is the assistant's
answer (text or tool calls, not empty) and a user message comes before it.

:func:`conversation_text` is the plain readable transcript (``User: …`` / ``Assistant: …``
blocks) used as :attr:`traitvec.traits.Prompt.text` and as the frame for models without a chat
template.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from .errors import TraitDataError

__all__ = [
    "ROLES",
    "Message",
    "ToolCall",
    "check_answer",
    "conversation_text",
    "is_blank",
    "message_text",
    "parse_messages",
]

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant", "tool")
_MESSAGE_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name")
_CALL_KEYS = ("id", "type", "function")
_LABELS = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}
# Characters that render as nothing but are not whitespace to str.strip(): zero-width spaces and
# joiners, the word joiner, BOMs and other format characters (category Cf), controls (Cc), and the
# fillers that fonts draw blank (Hangul fillers, the Braille blank, the combining grapheme joiner).
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
_BLANK_FILLERS = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0")


def is_blank(text: str) -> bool:
    """True when ``text`` shows nothing: empty, whitespace, or only zero-width and other invisible characters.

    Example:
        >>> is_blank("\u200b\u200d "), is_blank("a\u200b")
        (True, False)
    """
    return all(ch.isspace() or ch in _BLANK_FILLERS or unicodedata.category(ch) in _INVISIBLE_CATEGORIES for ch in text)


@dataclass(frozen=True)
class ToolCall:
    """One function call made by the assistant.

    Attributes:
        name: the function's name.
        arguments: the call's arguments as JSON text, as given in the data.
        id: the call's id (tool messages answer it with ``tool_call_id``), if the data has one.
    """

    name: str
    arguments: str
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI form, ``{"id", "type": "function", "function": {"name", "arguments"}}``."""
        out: dict[str, Any] = {} if self.id is None else {"id": self.id}
        out["type"] = "function"
        out["function"] = {"name": self.name, "arguments": self.arguments}
        return out


@dataclass(frozen=True)
class Message:
    """One message of a conversation.

    Attributes:
        role: ``system``, ``user``, ``assistant`` or ``tool``.
        content: the text; ``None`` only for an assistant message that makes tool calls.
        tool_calls: the assistant's function calls (empty for other roles).
        tool_call_id: for a tool message, the id of the call it answers.
        name: an optional name (for a tool message, the tool's name).
    """

    role: Role
    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI/ChatML form (``content`` always present, optional keys only when set)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


def message_text(message: Message) -> str:
    """The readable body of a message: its content, then each tool call as ``tool_call: NAME`` /
    ``arguments: ARGS`` lines."""
    parts = [message.content] if message.content else []
    parts += [f"tool_call: {call.name}\narguments: {call.arguments}" for call in message.tool_calls]
    return "\n".join(parts)


def conversation_text(messages: Sequence[Message]) -> str:
    """A plain transcript, one ``Role: body`` block per message, blocks separated by a blank line.

    The transcript ends with the last message's body, so the final answer is its last
    ``len(message_text(messages[-1]))`` characters.

    Example:
        >>> conversation_text([Message("user", "Hi?"), Message("assistant", "Hello.")])
        'User: Hi?\\n\\nAssistant: Hello.'
    """
    blocks = []
    for message in messages:
        label = _LABELS[message.role]
        if message.role == "tool" and message.name:
            label = f"{label} ({message.name})"
        blocks.append(f"{label}: {message_text(message)}")
    return "\n\n".join(blocks)


def parse_messages(value: object, *, what: str = '"messages"') -> tuple[Message, ...]:
    """Validate a JSON list of messages and return them as :class:`Message` values.

    Args:
        value: the decoded JSON value.
        what: how the value is named in error messages (``'"conversations"'``, ``'"chosen"'``).

    Raises:
        TraitDataError: the value breaks a rule; the message names the message index and key but
            no file (callers add the file and line).
    """
    if not isinstance(value, list) or not value:
        raise TraitDataError(f"{what} must be a non-empty list of messages, got {_show(value)}")
    return tuple(_parse_message(item, f"{what} message {index + 1}") for index, item in enumerate(value))


def check_answer(messages: Sequence[Message], *, what: str = "the conversation") -> None:
    """Require a final assistant answer (text or tool calls) with a user message before it.

    Raises:
        TraitDataError: the rule is broken (no file named; callers add it).
    """
    last = messages[-1]
    if last.role != "assistant":
        raise TraitDataError(
            f"{what} ends with a {last.role} message; the last message must be the assistant's answer "
            "that the pair contrasts"
        )
    if is_blank(last.content or "") and not last.tool_calls:
        raise TraitDataError(f"{what} ends with an empty assistant answer; write the answer or drop the row")
    if not any(m.role == "user" for m in messages[:-1]):
        raise TraitDataError(f"{what} has no user message before the final answer; add the user's request")


def _parse_message(item: object, where: str) -> Message:
    if not isinstance(item, dict):
        raise TraitDataError(f'{where} must be an object like {{"role": "user", "content": "..."}}, got {_show(item)}')
    unknown = sorted(set(item) - set(_MESSAGE_KEYS))
    if unknown:
        raise TraitDataError(
            f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; a message has {', '.join(_MESSAGE_KEYS)}"
        )
    role = item.get("role")
    if role not in ROLES:
        raise TraitDataError(f'{where}: "role" is {_show(role)}; use one of {", ".join(ROLES)}')
    role = cast(Role, role)
    calls = _parse_calls(item.get("tool_calls"), where, role)
    content = item.get("content")
    if content is None and not calls:
        raise TraitDataError(
            f'{where} ({role}) has no "content"; only an assistant message with "tool_calls" may have content null'
        )
    if content is not None and not isinstance(content, str):
        raise TraitDataError(f'{where} ({role}): "content" must be a string, got {_show(content)}')
    call_id, name = item.get("tool_call_id"), item.get("name")
    if call_id is not None and (role != "tool" or not isinstance(call_id, str)):
        raise TraitDataError(f'{where} ({role}): "tool_call_id" belongs on a tool message and must be a string')
    if name is not None and not isinstance(name, str):
        raise TraitDataError(f'{where} ({role}): "name" must be a string, got {_show(name)}')
    return Message(role, content, calls, call_id, name)


def _parse_calls(value: object, where: str, role: Role) -> tuple[ToolCall, ...]:
    if value is None or value == []:
        return ()
    if role != "assistant":
        raise TraitDataError(f'{where} ({role}) has "tool_calls"; only assistant messages make tool calls')
    if not isinstance(value, list):
        raise TraitDataError(f'{where}: "tool_calls" must be a list, got {_show(value)}')
    calls = []
    for index, call in enumerate(value):
        at = f"{where} tool call {index + 1}"
        shape = '{"id": "...", "type": "function", "function": {"name": "...", "arguments": "{...}"}}'
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            raise TraitDataError(f"{at} must look like {shape}, got {_show(call)}")
        unknown = sorted(set(call) - set(_CALL_KEYS))
        if unknown:
            raise TraitDataError(f"{at} has unknown key(s) {', '.join(map(repr, unknown))}; expected {shape}")
        if call.get("type", "function") != "function":
            raise TraitDataError(f'{at}: "type" is {_show(call.get("type"))}; only "function" calls are supported')
        call_id = call.get("id")
        if call_id is not None and not isinstance(call_id, str):
            raise TraitDataError(f'{at}: "id" must be a string, got {_show(call_id)}')
        function = call["function"]
        name, arguments = function.get("name"), function.get("arguments")
        if not isinstance(name, str) or is_blank(name):
            raise TraitDataError(f'{at}: "function.name" must be a non-empty string, got {_show(name)}')
        if isinstance(arguments, dict):
            arguments = json.dumps(arguments, ensure_ascii=False)
        if not isinstance(arguments, str):
            raise TraitDataError(f'{at}: "function.arguments" must be JSON text (a string), got {_show(arguments)}')
        calls.append(ToolCall(name, arguments, call_id))
    return tuple(calls)


def _show(value: object, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else text[: limit - 1] + "…"
