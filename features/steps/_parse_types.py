"""Types for step sentences: JSON values, possibly-empty quoted text, node roles and time
limits."""

import json

import parse
from behave import register_type


@parse.with_pattern(r'\{.*?\}|\[.*?\]|"[^"]*"|true|false|null|-?\d+(?:\.\d+)?')
def parse_json(text):
    return json.loads(text)


@parse.with_pattern(r"[^\"]*")
def parse_text(text):
    return text


@parse.with_pattern(r"owner|backup|new owner|new backup")
def parse_role(text):
    return text


@parse.with_pattern(r"\d+(?:\.\d+)? seconds(?: \(stretched [\d.]+ times to [\d.]+ s\))?")
def parse_limit(text):
    """A stated time limit, ``N seconds``; with ``-D timeout_multiplier`` the hooks add
    what it was stretched to, and the step still receives the stated N."""
    return float(text.split()[0])


register_type(Json=parse_json, Text=parse_text, Role=parse_role, Limit=parse_limit)
