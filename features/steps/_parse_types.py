"""Types for step sentences: JSON values, possibly-empty quoted text, and node roles."""

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


register_type(Json=parse_json, Text=parse_text, Role=parse_role)
