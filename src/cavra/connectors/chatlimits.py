"""Provider limits a templated ChatOps message must keep, checked before it is sent.

Slack (Block Kit reference, "Blocks" and each block's page; chat.postMessage "Truncating content"): at
most 50 blocks in a message; a header's ``plain_text`` at most 150 characters; a section's ``text`` at
most 3000 and its ``fields`` at most 10 of 2000 each; a context block at most 10 elements; a ``block_id``
at most 255 characters; the ``text`` at most 40,000 characters; a message needs ``text`` or ``blocks``.
Teams: a message of at most about 28 KB (Microsoft Learn, "Format cards in Microsoft Teams": "the card
size limit is 28 KB"); see :data:`cavra.connectors.teams.MAX_BYTES`.
"""

from __future__ import annotations

from typing import Any

SLACK_MAX_TEXT = 40_000
SLACK_MAX_BLOCKS = 50
SLACK_MAX_HEADER = 150
SLACK_MAX_SECTION = 3000
SLACK_MAX_FIELDS = 10
SLACK_MAX_FIELD = 2000
SLACK_MAX_CONTEXT = 10
SLACK_MAX_BLOCK_ID = 255


def _text_len(obj: Any) -> int | None:
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        return len(obj["text"])
    return None


def _block_problem(i: int, block: Any) -> str | None:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        return f"blocks[{i}] is not a block (an object with a type)"
    block_id = block.get("block_id")
    if block_id is not None and (not isinstance(block_id, str) or len(block_id) > SLACK_MAX_BLOCK_ID):
        return f"blocks[{i}].block_id is over {SLACK_MAX_BLOCK_ID} characters"
    kind = block["type"]
    if kind == "header":
        size = _text_len(block.get("text"))
        if size is None or size > SLACK_MAX_HEADER:
            return f"blocks[{i}] header text must be 1-{SLACK_MAX_HEADER} characters"
    elif kind == "section":
        text, fields = block.get("text"), block.get("fields")
        if text is None and fields is None:
            return f"blocks[{i}] section needs text or fields"
        if text is not None and ((_text_len(text) or 0) > SLACK_MAX_SECTION or _text_len(text) is None):
            return f"blocks[{i}] section text must be at most {SLACK_MAX_SECTION} characters"
        if fields is not None:
            if not isinstance(fields, list) or not 0 < len(fields) <= SLACK_MAX_FIELDS:
                return f"blocks[{i}] section must have 1-{SLACK_MAX_FIELDS} fields"
            for n, one in enumerate(fields):
                size = _text_len(one)
                if size is None or size > SLACK_MAX_FIELD:
                    return f"blocks[{i}].fields[{n}] must be a text of at most {SLACK_MAX_FIELD} characters"
    elif kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 0 < len(elements) <= SLACK_MAX_CONTEXT:
            return f"blocks[{i}] context must have 1-{SLACK_MAX_CONTEXT} elements"
    return None


def slack_problem(message: dict[str, Any]) -> str | None:
    """Why Slack would refuse (or cut) ``message``, or ``None``."""
    text, blocks = message.get("text"), message.get("blocks")
    if not isinstance(text, str):
        return "text must be a string"
    if len(text) > SLACK_MAX_TEXT:
        return f"text is {len(text)} characters, over Slack's {SLACK_MAX_TEXT}"
    if blocks is not None:
        if not isinstance(blocks, list):
            return "blocks must render a JSON list"
        if len(blocks) > SLACK_MAX_BLOCKS:
            return f"{len(blocks)} blocks, over Slack's {SLACK_MAX_BLOCKS}"
        for i, block in enumerate(blocks):
            problem = _block_problem(i, block)
            if problem is not None:
                return problem
    if not text.strip() and not blocks:
        return "the message has neither text nor blocks"
    return None
