"""The `toolcalls` suite: prompts offered tools (nested objects, enums, arrays, optional fields), each labelled whether
a tool call is expected — and which, with which arguments. Judged as Kimi's vendor verifier judges a route: did it call
when it should (trigger precision / recall / F1), do the arguments parse and validate against the tool's JSON Schema,
and does finish_reason agree with what came back."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

SUITE = "toolcalls"


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": required, "additionalProperties": False}}}


S, N, B = {"type": "string"}, {"type": "number"}, {"type": "boolean"}
TOOLS = {
    "get_weather": _tool("get_weather", "Current weather for a city.", {
        "city": S, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, ["city"]),
    "search_flights": _tool("search_flights", "Search flights between two airports on a date.", {
        "origin": S, "destination": S, "date": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
        "passengers": {"type": "integer", "minimum": 1}}, ["origin", "destination", "date"]),
    "create_issue": _tool("create_issue", "Open an issue in a repository.", {
        "repo": S, "title": S, "labels": {"type": "array", "items": S},
        "priority": {"type": "string", "enum": ["low", "medium", "high"]}}, ["repo", "title"]),
    "convert_currency": _tool("convert_currency", "Convert an amount between currencies.", {
        "amount": N, "source": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "target": {"type": "string", "pattern": "^[A-Z]{3}$"}}, ["amount", "source", "target"]),
    "run_sql": _tool("run_sql", "Run a read-only SQL query.", {
        "query": S, "database": {"type": "string", "enum": ["analytics", "billing"]}}, ["query", "database"]),
    "send_email": _tool("send_email", "Send an email.", {
        "to": {"type": "array", "items": S, "minItems": 1}, "subject": S, "body": S,
        "cc": {"type": "array", "items": S}}, ["to", "subject", "body"]),
    "set_reminder": _tool("set_reminder", "Set a reminder.", {
        "text": S, "at": S, "repeat": {"type": "string", "enum": ["none", "daily", "weekly"]}}, ["text", "at"]),
    "lookup_symbol": _tool("lookup_symbol", "Find where a symbol is defined in the codebase.", {
        "name": S, "language": {"type": "string", "enum": ["python", "typescript", "go"]}}, ["name"]),
    "resize_image": _tool("resize_image", "Resize an image file.", {
        "path": S, "width": {"type": "integer", "minimum": 1}, "height": {"type": "integer", "minimum": 1},
        "keep_aspect": B}, ["path", "width"]),
    "book_table": _tool("book_table", "Book a restaurant table.", {
        "restaurant": S, "party_size": {"type": "integer", "minimum": 1}, "time": S,
        "preferences": {"type": "object", "properties": {"vegetarian": B, "outdoor": B},
                        "additionalProperties": False}}, ["restaurant", "party_size", "time"]),
    "get_stock_price": _tool("get_stock_price", "Latest price of a stock.", {
        "ticker": {"type": "string", "pattern": "^[A-Z]{1,5}$"}}, ["ticker"]),
    "translate": _tool("translate", "Translate text.", {
        "text": S, "target_language": {"type": "string", "enum": ["fr", "de", "es", "ja"]}}, ["text", "target_language"]),
}

# (tool, prompt, arguments): a call is expected with these arguments
CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("get_weather", "What's the weather in Paris right now?", {"city": "Paris"}),
    ("get_weather", "Is it raining in Tokyo? Give me the temperature in celsius.", {"city": "Tokyo", "unit": "celsius"}),
    ("get_weather", "How warm is it in Austin, in fahrenheit?", {"city": "Austin", "unit": "fahrenheit"}),
    ("get_weather", "Check the current conditions in Nairobi.", {"city": "Nairobi"}),
    ("get_weather", "Do I need a coat in Oslo today?", {"city": "Oslo"}),
    ("search_flights", "Find flights from SFO to JFK on 2026-12-20.",
     {"origin": "SFO", "destination": "JFK", "date": "2026-12-20"}),
    ("search_flights", "I need 2 seats from LHR to CDG on 2027-01-05.",
     {"origin": "LHR", "destination": "CDG", "date": "2027-01-05", "passengers": 2}),
    ("search_flights", "Any flights Berlin (BER) to Madrid (MAD) on 2026-12-01?",
     {"origin": "BER", "destination": "MAD", "date": "2026-12-01"}),
    ("search_flights", "Search flights NRT to SYD on 2027-02-14 for 4 passengers.",
     {"origin": "NRT", "destination": "SYD", "date": "2027-02-14", "passengers": 4}),
    ("search_flights", "Look up flights from ORD to DEN leaving 2026-12-24.",
     {"origin": "ORD", "destination": "DEN", "date": "2026-12-24"}),
    ("create_issue", "Open an issue in acme/api titled 'Login times out' with label bug.",
     {"repo": "acme/api", "title": "Login times out", "labels": ["bug"]}),
    ("create_issue", "File a high priority issue in acme/web: 'Checkout button is hidden on mobile'.",
     {"repo": "acme/web", "title": "Checkout button is hidden on mobile", "priority": "high"}),
    ("create_issue", "Create an issue in tools/cli called 'Add --json flag' labelled enhancement and cli.",
     {"repo": "tools/cli", "title": "Add --json flag", "labels": ["enhancement", "cli"]}),
    ("create_issue", "Please log a low priority issue 'Typo in README' in docs/site.",
     {"repo": "docs/site", "title": "Typo in README", "priority": "low"}),
    ("create_issue", "Track this in acme/api: 'Rate limiter ignores Retry-After'.",
     {"repo": "acme/api", "title": "Rate limiter ignores Retry-After"}),
    ("convert_currency", "Convert 250 USD to EUR.", {"amount": 250, "source": "USD", "target": "EUR"}),
    ("convert_currency", "How much is 1000 JPY in GBP?", {"amount": 1000, "source": "JPY", "target": "GBP"}),
    ("convert_currency", "What do 19.99 CHF come to in USD?", {"amount": 19.99, "source": "CHF", "target": "USD"}),
    ("convert_currency", "Change 5000 INR into AUD.", {"amount": 5000, "source": "INR", "target": "AUD"}),
    ("convert_currency", "Convert 42 EUR to CAD please.", {"amount": 42, "source": "EUR", "target": "CAD"}),
    ("run_sql", "Count the users who signed up last week in the analytics database.",
     {"query": "SELECT COUNT(*) FROM users WHERE signup_date >= now() - interval '7 days'", "database": "analytics"}),
    ("run_sql", "From billing, list the 10 largest invoices.",
     {"query": "SELECT * FROM invoices ORDER BY amount DESC LIMIT 10", "database": "billing"}),
    ("run_sql", "Query analytics for the number of page views yesterday.",
     {"query": "SELECT COUNT(*) FROM page_views WHERE day = current_date - 1", "database": "analytics"}),
    ("run_sql", "What is the total revenue in billing for 2026?",
     {"query": "SELECT SUM(amount) FROM invoices WHERE year = 2026", "database": "billing"}),
    ("run_sql", "Run a query on analytics to get the top 5 countries by sessions.",
     {"query": "SELECT country, COUNT(*) FROM sessions GROUP BY country ORDER BY 2 DESC LIMIT 5",
      "database": "analytics"}),
    ("send_email", "Email ana@example.com with subject 'Standup' saying 'Moved to 10:30'.",
     {"to": ["ana@example.com"], "subject": "Standup", "body": "Moved to 10:30"}),
    ("send_email", "Send bo@example.com and cy@example.com an email titled 'Release' with body 'v2 is out'.",
     {"to": ["bo@example.com", "cy@example.com"], "subject": "Release", "body": "v2 is out"}),
    ("send_email", "Write to ops@example.com, cc dev@example.com, subject 'Outage', body 'API down since 9am'.",
     {"to": ["ops@example.com"], "cc": ["dev@example.com"], "subject": "Outage", "body": "API down since 9am"}),
    ("send_email", "Let hr@example.com know by email (subject 'Leave') that I'm off Friday.",
     {"to": ["hr@example.com"], "subject": "Leave", "body": "I'm off Friday"}),
    ("send_email", "Send an email to team@example.com: subject 'Lunch', body 'Pizza at noon'.",
     {"to": ["team@example.com"], "subject": "Lunch", "body": "Pizza at noon"}),
    ("set_reminder", "Remind me to call mom at 2026-12-01 18:00.", {"text": "call mom", "at": "2026-12-01 18:00"}),
    ("set_reminder", "Set a daily reminder to stretch at 09:00.", {"text": "stretch", "at": "09:00", "repeat": "daily"}),
    ("set_reminder", "Remind me every week to water the plants, Sundays 10:00.",
     {"text": "water the plants", "at": "Sunday 10:00", "repeat": "weekly"}),
    ("set_reminder", "Reminder: submit expenses on 2026-12-15 at noon.",
     {"text": "submit expenses", "at": "2026-12-15 12:00"}),
    ("set_reminder", "Ping me at 17:30 to leave for the train.", {"text": "leave for the train", "at": "17:30"}),
    ("lookup_symbol", "Where is parse_total defined in our Python code?", {"name": "parse_total", "language": "python"}),
    ("lookup_symbol", "Find the definition of useSession in the TypeScript app.",
     {"name": "useSession", "language": "typescript"}),
    ("lookup_symbol", "Locate the NewServer function in the Go service.", {"name": "NewServer", "language": "go"}),
    ("lookup_symbol", "Which file defines RetryPolicy?", {"name": "RetryPolicy"}),
    ("lookup_symbol", "Find where slugify is declared.", {"name": "slugify"}),
    ("resize_image", "Resize photos/cat.png to 800 pixels wide.", {"path": "photos/cat.png", "width": 800}),
    ("resize_image", "Make banner.jpg 1200x400 without keeping the aspect ratio.",
     {"path": "banner.jpg", "width": 1200, "height": 400, "keep_aspect": False}),
    ("resize_image", "Scale avatar.webp down to 128 wide, keep the aspect.",
     {"path": "avatar.webp", "width": 128, "keep_aspect": True}),
    ("resize_image", "Shrink docs/diagram.png to 640 by 480.", {"path": "docs/diagram.png", "width": 640, "height": 480}),
    ("resize_image", "Resize logo.png to width 256.", {"path": "logo.png", "width": 256}),
    ("book_table", "Book a table for 4 at Luigi's at 19:30.", {"restaurant": "Luigi's", "party_size": 4, "time": "19:30"}),
    ("book_table", "Reserve Green Leaf for 2 at 12:00, vegetarian, outside if possible.",
     {"restaurant": "Green Leaf", "party_size": 2, "time": "12:00",
      "preferences": {"vegetarian": True, "outdoor": True}}),
    ("book_table", "Get us a table at Sakura for 6 people at 20:00.",
     {"restaurant": "Sakura", "party_size": 6, "time": "20:00"}),
    ("book_table", "Table for one at Cafe Nord, 08:15, indoors.",
     {"restaurant": "Cafe Nord", "party_size": 1, "time": "08:15", "preferences": {"outdoor": False}}),
    ("book_table", "Book The Grill for 3 at 18:45.", {"restaurant": "The Grill", "party_size": 3, "time": "18:45"}),
    ("get_stock_price", "What's AAPL trading at?", {"ticker": "AAPL"}),
    ("get_stock_price", "Latest price for Microsoft (MSFT)?", {"ticker": "MSFT"}),
    ("get_stock_price", "How is NVDA doing right now?", {"ticker": "NVDA"}),
    ("get_stock_price", "Give me the current quote for TSLA.", {"ticker": "TSLA"}),
    ("get_stock_price", "Check the price of GOOGL.", {"ticker": "GOOGL"}),
    ("translate", "Translate 'good morning' into French.", {"text": "good morning", "target_language": "fr"}),
    ("translate", "How do you say 'where is the station' in German?",
     {"text": "where is the station", "target_language": "de"}),
    ("translate", "Put 'thank you for your help' into Spanish.",
     {"text": "thank you for your help", "target_language": "es"}),
    ("translate", "Translate 'see you tomorrow' to Japanese.", {"text": "see you tomorrow", "target_language": "ja"}),
    ("translate", "Say 'the build is green' in French.", {"text": "the build is green", "target_language": "fr"}),
]

# (tool offered, prompt): no call is expected — the answer is knowledge, opinion or writing
NO_CALLS: list[tuple[str, str]] = [
    ("get_weather", "Why is the sky blue?"), ("get_weather", "Explain what a weather front is."),
    ("get_weather", "Write a haiku about rain."), ("get_weather", "What causes hurricanes, in two sentences?"),
    ("search_flights", "What does IATA stand for?"), ("search_flights", "Give me three tips to sleep on a plane."),
    ("search_flights", "Why do planes fly at 35,000 feet?"), ("search_flights", "What is jet lag?"),
    ("create_issue", "What makes a good bug report?"), ("create_issue", "Explain semantic versioning."),
    ("create_issue", "Summarise the difference between an issue and a pull request."),
    ("create_issue", "How should I prioritise a backlog?"),
    ("convert_currency", "What is inflation?"), ("convert_currency", "Why do exchange rates change?"),
    ("convert_currency", "Explain what a currency peg is."), ("convert_currency", "What is the ISO code for the euro?"),
    ("run_sql", "What is the difference between INNER JOIN and LEFT JOIN?"),
    ("run_sql", "Explain database indexes in simple terms."), ("run_sql", "What does ACID mean?"),
    ("run_sql", "When should I denormalise a table?"),
    ("send_email", "How do I write a polite follow-up email? Just give advice."),
    ("send_email", "What is the difference between cc and bcc?"), ("send_email", "What is SPF in email?"),
    ("send_email", "Suggest a subject line for a product launch announcement."),
    ("set_reminder", "What is the Pomodoro technique?"), ("set_reminder", "How can I build a daily habit?"),
    ("set_reminder", "Why do we forget things?"), ("set_reminder", "Give me a morning routine idea."),
    ("lookup_symbol", "What is a closure in Python?"), ("lookup_symbol", "Explain TypeScript generics briefly."),
    ("lookup_symbol", "What is a goroutine?"), ("lookup_symbol", "What does the 'yield' keyword do?"),
    ("resize_image", "What is the difference between PNG and JPEG?"), ("resize_image", "What is an aspect ratio?"),
    ("resize_image", "Explain what DPI means."), ("resize_image", "Why do resized images look blurry?"),
    ("book_table", "What wine goes with salmon?"), ("book_table", "How much should I tip in the US?"),
    ("book_table", "What is a tasting menu?"), ("book_table", "Suggest a vegetarian dinner recipe."),
    ("get_stock_price", "What is a stock split?"), ("get_stock_price", "Explain price-to-earnings ratio."),
    ("get_stock_price", "What is an index fund?"), ("get_stock_price", "What does bear market mean?"),
    ("translate", "Why is Japanese written with three scripts?"), ("translate", "What language is spoken in Brazil?"),
    ("translate", "What is a false friend in translation?"), ("translate", "Is Spanish easier than French to learn?"),
]


@dataclass(frozen=True)
class ToolCase:
    task_id: str
    prompt: str
    tools: tuple[str, ...]  # offered, the relevant one first in the source, shuffled in the request
    expect_call: bool
    expected_tool: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def suite(self) -> str:
        return SUITE

    @property
    def id(self) -> str:
        return self.task_id

    def tool_schemas(self) -> list[dict[str, Any]]:
        return [TOOLS[name] for name in self.tools]


@functools.cache
def cases() -> tuple[ToolCase, ...]:
    """The shipped cases, in a stable order: each offers its tool and the next tool in TOOLS as a distractor."""
    names = list(TOOLS)
    out = []
    for index, (tool, prompt, arguments) in enumerate(CALLS):
        other = names[(names.index(tool) + 1) % len(names)]
        tools = (tool, other) if index % 2 else (other, tool)
        out.append(ToolCase(f"call-{index:03d}", prompt, tools, True, tool, arguments))
    for index, (tool, prompt) in enumerate(NO_CALLS):
        other = names[(names.index(tool) + 1) % len(names)]
        out.append(ToolCase(f"text-{index:03d}", prompt, (tool, other), False))
    return tuple(out)


def case_in_text(text: str) -> ToolCase | None:
    """The case whose prompt a request carries (how the emulator knows what it was asked)."""
    for case in cases():
        if case.prompt == text.strip():
            return case
    return None
