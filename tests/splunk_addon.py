"""A reader for the Splunk add-on: its .conf files, and the search-time steps it defines, applied to one line.

Splunk cannot run here, so this applies the add-on's own settings in Splunk's documented search-time
order (extractions, field aliases, calculated fields, lookups, event types, tags) with a small evaluator
for the eval functions the add-on uses. Anything the add-on writes that this reader does not understand
is an error, so a new construct has to be taught here before a test can pass with it.
"""

from __future__ import annotations

import configparser
import csv
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from tests.splunk_eval import Value, evaluate, references

__all__ = ["Addon", "json_fields", "read_conf"]


def read_conf(path: Path) -> dict[str, dict[str, str]]:
    """A .conf file as ``{stanza: {key: value}}``, keys case-sensitive, values verbatim."""
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes=("#",),
                                       inline_comment_prefixes=None, strict=True, default_section="\0")
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    return {name: dict(parser[name]) for name in parser.sections()}


def json_fields(document: Any, prefix: str = "") -> dict[str, Value]:
    """Field names as ``KV_MODE = json`` makes them: dotted paths, ``{}`` after an array, leaves as text."""
    out: dict[str, Value] = {}

    def put(name: str, value: Any) -> None:
        text = json.dumps(value) if isinstance(value, bool) else str(value)
        current = out.get(name)
        out[name] = text if current is None else [*([current] if isinstance(current, str) else current), text]

    def walk(value: Any, name: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{name}.{key}" if name else key)
        elif isinstance(value, list):
            for item in value:
                walk(item, f"{name}{{}}")
        elif value is not None:
            put(name, value)

    walk(document, prefix)
    return out


_TIME_PARTS = re.compile(r"%(?:(10)s|(3)N|([YmdHMS]))")
_TIME_WIDTH = {"Y": 4, "m": 2, "d": 2, "H": 2, "M": 2, "S": 2}


def _parse_time(text: str, fmt: str) -> datetime:
    """Splunk's strptime for the conversions the add-on uses; anything else is an error."""
    pattern, names, pos = "", [], 0
    for match in _TIME_PARTS.finditer(fmt):
        literal = fmt[pos:match.start()]
        assert "%" not in literal, f"unsupported TIME_FORMAT conversion in {fmt!r}"
        pattern += re.escape(literal)
        if match[1]:
            pattern, names = pattern + r"(\d{10})", [*names, "epoch"]
        elif match[2]:
            pattern, names = pattern + r"(\d{3})", [*names, "ms"]
        else:
            pattern, names = pattern + rf"(\d{{{_TIME_WIDTH[match[3]]}}})", [*names, match[3]]
        pos = match.end()
    assert "%" not in fmt[pos:], f"unsupported TIME_FORMAT conversion in {fmt!r}"
    found = re.match(pattern + re.escape(fmt[pos:]), text)
    assert found, f"{text!r} does not match TIME_FORMAT {fmt!r}"
    parts = dict(zip(names, (int(g) for g in found.groups())))
    millis = timedelta(milliseconds=parts.get("ms", 0))
    if "epoch" in parts:
        return datetime.fromtimestamp(parts["epoch"], timezone.utc) + millis
    date = (parts["Y"], parts["m"], parts["d"], parts["H"], parts["M"], parts["S"])
    return datetime(*date, tzinfo=timezone.utc) + millis


class Addon:
    """The add-on in ``directory``: its settings, and what they make of one event."""

    def __init__(self, directory: Path) -> None:
        default = directory / "default"
        self.props = read_conf(default / "props.conf")
        self.transforms = read_conf(default / "transforms.conf")
        self.eventtypes = read_conf(default / "eventtypes.conf")
        self.tags = read_conf(default / "tags.conf")
        self.lookups: dict[str, list[dict[str, str]]] = {}
        for name, stanza in self.transforms.items():
            if "filename" in stanza:
                with (directory / "lookups" / stanza["filename"]).open(encoding="utf-8", newline="") as handle:
                    self.lookups[name] = list(csv.DictReader(handle))

    def settings(self, sourcetype: str, prefix: str) -> dict[str, str]:
        """The stanza's settings whose key starts with ``prefix`` (``EVAL-``, ``REPORT-``...), by key."""
        return {k: v for k, v in sorted(self.props[sourcetype].items()) if k.startswith(prefix)}

    def _reports(self, sourcetype: str) -> list[dict[str, str]]:
        return [self.transforms[name.strip()] for value in self.settings(sourcetype, "REPORT-").values()
                for name in value.split(",")]

    def aliases(self, sourcetype: str) -> list[tuple[str, str]]:
        """``(field, alias)`` for every FIELDALIAS of the stanza."""
        pairs = []
        for value in self.settings(sourcetype, "FIELDALIAS-").values():
            words = value.split()
            assert len(words) % 3 == 0 and all(w == "AS" for w in words[1::3]), f"unsupported alias {value!r}"
            pairs += list(zip(words[0::3], words[2::3]))
        return pairs

    def lookup_inputs(self, sourcetype: str) -> list[tuple[str, str, list[str]]]:
        """``(event field, lookup, outputs)`` for every automatic lookup of the stanza."""
        return [(match, table, outputs) for table, match, outputs in self._lookup_specs(sourcetype)]

    def _lookup_specs(self, sourcetype: str) -> list[tuple[str, str, list[str]]]:
        specs = []
        for value in self.settings(sourcetype, "LOOKUP-").values():
            match = re.fullmatch(r"(\w+) (\w+) OUTPUT ((?:\w+ ?)+)", value)
            assert match, f"unsupported lookup {value!r}"
            specs.append((match[1], match[2], match[3].split()))
        return specs

    def extract(self, sourcetype: str, raw: str) -> dict[str, Value]:
        """The fields before aliases: KV_MODE json, or the REPORT transforms in order."""
        stanza = self.props[sourcetype]
        if stanza.get("KV_MODE") == "json":
            return json_fields(json.loads(raw))
        assert stanza.get("KV_MODE") == "none", "only json or REPORT extractions are understood"
        fields: dict[str, Value] = {}
        for transform in self._reports(sourcetype):
            source = raw if transform.get("SOURCE_KEY", "_raw") == "_raw" else fields.get(transform["SOURCE_KEY"])
            if not isinstance(source, str):
                continue
            for match in re.finditer(transform["REGEX"], source):
                if transform["FORMAT"] == "$1::$2":
                    pairs = [(match[1], match[2])]
                else:
                    pairs = [(name, match[int(group)]) for name, group in
                             re.findall(r"(\w+)::\$(\d+)", transform["FORMAT"])]
                for name, value in pairs:
                    if value != "":  # KEEP_EMPTY_VALS defaults to false
                        fields.setdefault(name, value)  # MV_ADD defaults to false: the first value stays
        return fields

    def search_time(self, sourcetype: str, raw: str) -> dict[str, Value]:
        """Every field of the event after aliases, calculated fields, lookups, event types and tags."""
        fields = self.extract(sourcetype, raw)
        fields["sourcetype"] = sourcetype
        for source, alias in self.aliases(sourcetype):
            if source in fields:
                fields[alias] = fields[source]
            else:
                fields.pop(alias, None)
        calculated = {k[5:]: evaluate(v, fields) for k, v in self.settings(sourcetype, "EVAL-").items()}
        for name, value in calculated.items():  # calculated fields see none of each other
            if value is None:
                fields.pop(name, None)
            else:
                fields[name] = value
        for table, match_field, outputs in self._lookup_specs(sourcetype):
            key = fields.get(match_field)
            rows = [row for row in self.lookups[table] if isinstance(key, str)
                    and (row[match_field] == key or (self.transforms[table].get("case_sensitive_match") == "false"
                                                     and row[match_field].lower() == key.lower()))]
            for name in outputs:
                values = [row[name] for row in rows if row[name]]
                if values:
                    fields[name] = values[0] if len(values) == 1 else values
        eventtypes = [name for name, stanza in self.eventtypes.items() if _matches(stanza["search"], fields, [])]
        eventtypes = [name for name, stanza in self.eventtypes.items()
                      if _matches(stanza["search"], fields, eventtypes)]
        fields["eventtype"] = eventtypes
        tags = [self.tags.get(f"eventtype={name}", {}) for name in eventtypes]
        fields["tag"] = sorted({tag for stanza in tags for tag, state in stanza.items() if state == "enabled"})
        return fields

    def event_time(self, sourcetype: str, raw: str) -> datetime:
        """The event time that TIME_PREFIX, MAX_TIMESTAMP_LOOKAHEAD and TIME_FORMAT read from ``raw``."""
        stanza = self.props[sourcetype]
        assert stanza.get("TZ") in (None, "UTC")
        prefix = re.search(stanza["TIME_PREFIX"], raw)
        assert prefix, f"TIME_PREFIX {stanza['TIME_PREFIX']!r} not found"
        window = raw[prefix.end():prefix.end() + int(stanza["MAX_TIMESTAMP_LOOKAHEAD"])]
        return _parse_time(window, stanza["TIME_FORMAT"])

    def reads(self, sourcetype: str) -> set[str]:
        """The event fields the stanza reads: alias sources, eval references, lookup inputs.

        Calculated fields never see each other, so a name an eval reads is the extracted field even when
        another (or the same) eval defines it; a lookup sees aliases and calculated fields.
        """
        aliased = {alias for _, alias in self.aliases(sourcetype)}
        calculated = {k[5:] for k in self.settings(sourcetype, "EVAL-")}
        names: set[str] = {source for source, _ in self.aliases(sourcetype)}
        for expression in self.settings(sourcetype, "EVAL-").values():
            names |= references(expression) - aliased
        names |= {match for _, match, _ in self._lookup_specs(sourcetype)} - aliased - calculated
        return names - {"sourcetype"}

    def defines(self, sourcetype: str) -> set[str]:
        """The fields the stanza gives an event: calculated fields, aliases and lookup outputs."""
        return ({k[5:] for k in self.settings(sourcetype, "EVAL-")} | {a for _, a in self.aliases(sourcetype)}
                | {name for _, _, outputs in self._lookup_specs(sourcetype) for name in outputs})


def _matches(search: str, fields: dict[str, Value], eventtypes: list[str]) -> bool:
    """An event type search of ``field=value`` and ``field=*`` terms, AND by default, OR inside parentheses."""
    tokens = re.findall(r'\(|\)|\bOR\b|[\w.]+=(?:"[^"]*"|[^\s()]+)', search)
    assert re.sub(r"\s", "", "".join(tokens)) == re.sub(r"\s", "", search), f"unsupported search {search!r}"

    def term(text: str) -> bool:
        name, _, want = text.partition("=")
        want = want.strip('"')
        have = eventtypes if name == "eventtype" else fields.get(name)
        values = [have] if isinstance(have, str) else list(have or [])
        return bool(values) if want == "*" else want in values

    results: list[bool] = []
    group: list[bool] | None = None
    for token in tokens:
        if token == "(":
            group = []
        elif token == ")":
            assert group is not None
            results.append(any(group))
            group = None
        elif token == "OR":
            assert group is not None, "OR is understood only inside parentheses"
        elif group is not None:
            group.append(term(token))
        else:
            results.append(term(token))
    return all(results)
