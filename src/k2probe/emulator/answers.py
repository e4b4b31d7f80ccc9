"""Deterministic answers for the emulator: reasoning, then content or tool calls, cut into token-sized pieces."""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from typing import Any

from k2probe.eval.suite import text_of

_PIECE = re.compile(r"\s*\S+|\s+")

REVIEW_PY = """Review notes:
1. `row["price"]` and `row["qty"]` raise KeyError when a column is missing; say which one.
2. `float()` and `int()` raise ValueError on empty strings or text like "1,000"; validate before converting.
3. `int(row["qty"])` truncates "2.5" silently only if it was a float already; strings raise instead.
4. Floats are wrong for money: use `decimal.Decimal` so totals round predictably.
5. Negative quantities or prices pass unnoticed; decide whether they are allowed.

Safe patch plan: add a typed rewrite, keep the old name as a thin wrapper, add tests for each edge case.

```python
from decimal import Decimal, InvalidOperation
from typing import Mapping


def parse_total(row: Mapping[str, str]) -> Decimal:
    \"\"\"Return price * qty for one row, raising ValueError with the offending column.\"\"\"
    try:
        price = Decimal(str(row["price"]).strip())
        qty = int(str(row["qty"]).strip())
    except KeyError as exc:
        raise ValueError(f"missing column: {exc.args[0]}") from exc
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"bad number in row: {row!r}") from exc
    if price < 0 or qty < 0:
        raise ValueError("price and qty must not be negative")
    return price * qty
```"""

REVIEW_JS = """Review notes:
1. `Number(undefined)` is NaN: a missing field yields NaN instead of an error.
2. `Number("")` is 0, so empty cells count as zero silently.
3. Floating point totals drift for money; work in integer cents.

Safer rewrite:

```javascript
function total(row) {
  const price = Number.parseFloat(row?.price);
  const qty = Number.parseInt(row?.qty, 10);
  if (!Number.isFinite(price) || !Number.isInteger(qty)) {
    throw new TypeError(`bad row: ${JSON.stringify(row)}`);
  }
  return Math.round(price * 100) * qty / 100;
}
```"""

FASTAPI = """Plan: accept an UploadFile, decode it as UTF-8 CSV, check the header against the required columns,
and answer 422 with the missing ones.

```python
import csv
import io

from fastapi import FastAPI, File, HTTPException, UploadFile

app = FastAPI()
REQUIRED = {"id", "price", "qty"}


@app.post("/upload")
async def upload(file: UploadFile = File(...)) -> dict[str, int]:
    text = (await file.read()).decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    missing = REQUIRED - set(reader.fieldnames or [])
    if missing:
        raise HTTPException(status_code=422, detail=f"missing columns: {sorted(missing)}")
    return {"rows": sum(1 for _ in reader)}
```"""


CHECKOUT = """Checklist:
- [ ] Every input has a visible label tied to it (`<label for>`), not only placeholder text.
- [ ] The pay button text meets 4.5:1 contrast against its background.
- [ ] Error messages are announced (aria-live) and say how to fix the field.
- [ ] Card number, expiry and CVC use `autocomplete` and numeric input modes.
- [ ] Focus order follows the visual order; the pay button is reachable by keyboard.
- [ ] Totals are computed server-side; the client only displays them."""


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass
class Answer:
    """What the emulated model says: its reasoning, then either content or tool calls."""

    reasoning: str
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)

    def pieces(self, text: str) -> list[str]:
        return _PIECE.findall(text)


def _placeholder(schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    return {"integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}}.get(str(kind), "k2probe")


def _tool_arguments(tool: dict[str, Any]) -> str:
    params = (tool.get("function") or {}).get("parameters") or {}
    props = params.get("properties") or {}
    required = params.get("required") or list(props)
    return json.dumps({name: _placeholder(props.get(name, {})) for name in required})


def answer_for(body: dict[str, Any], seed: int, extra_notes: list[str] | None = None) -> Answer:
    """The emulated model's answer to a chat body: deterministic for (seed, messages)."""
    messages = body.get("messages") or []
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode()).hexdigest()
    rng = random.Random(f"{seed}:{digest}")
    last = messages[-1] if messages else {}
    prompt = text_of(last.get("content"))
    tools = body.get("tools") or []
    notes = " ".join(extra_notes or [])

    if last.get("role") == "tool":
        result = text_of(last.get("content"))[:200]
        return Answer(
            reasoning=f"The tool answered. I will report its result to the user. {notes}".strip(),
            content=f"The tool returned: {result}",
        )
    if tools and body.get("tool_choice", "auto") != "none":
        tool = tools[0]
        name = (tool.get("function") or {}).get("name", "tool")
        return Answer(
            reasoning=f"To answer, I should call {name} first, then use its result.",
            tool_calls=[ToolCall(id=f"{name}_0", name=name, arguments=_tool_arguments(tool))],
        )
    opener = rng.choice(["Let me look at", "I will examine", "First I check"])
    if "parse_total" in prompt:
        return Answer(f"{opener} the function: it indexes a dict, converts types and multiplies. "
                      "Missing keys, bad numbers, floats for money and negatives are the risks.", REVIEW_PY)
    if "function total" in prompt:
        return Answer(f"{opener} the JavaScript: Number() coerces silently, which hides bad input.", REVIEW_JS)
    if "FastAPI" in prompt:
        return Answer(f"{opener} what is needed: an upload endpoint, CSV parsing and a header check.", FASTAPI)
    if notes and "checkout" in prompt.lower():
        return Answer(f"{opener} the screenshot: form fields, labels, contrast and the pay button.",
                      f"{notes}\n\n{CHECKOUT}")
    summary = prompt.strip().splitlines()[0][:120] if prompt.strip() else "(empty)"
    content = f"Emulated answer to: {summary}"
    if notes:
        content += f"\n{notes}"
    return Answer(f"{opener} the request and answer briefly.", content)
