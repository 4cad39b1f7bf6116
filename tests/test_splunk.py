"""The Splunk add-on against the formatters, and its package through Splunk AppInspect.

Splunk itself cannot run here. The field lists come from the formatters' output at test time (the golden
inputs and one record per Mimecast status), and the add-on's settings are applied to that output in
Splunk's search-time order by tests/splunk_addon.py, so renaming a field in a formatter fails these tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from collector.config import STATUSES
from collector.formats.base import Event
from collector.formats.cef import CefFormatter, escape_value
from collector.formats.ecs import EcsFormatter
from collector.formats.severity import DEFAULT_SEVERITY, outcome
from collector.records import parse_tracked_email
from collector.sinks.syslogmsg import MessageBuilder
from tests.cef_decoder import decode
from tests.conftest import ROOT
from tests.splunk_addon import Addon, json_fields
from tests.splunk_eval import comparisons, references
from tests.test_formats import FETCHED, golden_inputs
from tests.test_syslog_messages import sink_config

SPLUNK = ROOT / "integrations" / "splunk"
ADDON = Addon(SPLUNK / "TA-mimecast-collector")
ECS, CEF = "mimecast:tracking:ecs", "mimecast:tracking:cef"
# What the add-on promises every source type gives (the CIM Email fields it maps), and the actions it may use.
CIM_FIELDS = ("action", "src_user", "src_user_domain", "recipient", "recipient_domain", "recipient_count", "subject",
              "internal_message_id", "message_info", "src", "direction", "vendor_product", "filter_score",
              "filter_action", "signature")
CIM_ACTIONS = {"delivered", "blocked", "quarantined", "deferred"}
# SC4S's CEF header columns (app-cef.conf csv-parser, sent as indexed fields.cef_*); Splunk's CEF add-on
# extracts the same names, and both leave extension keys as CEF writes them (cs1, cs1Label, suser...).
SC4S_HEADER = ("cef_version", "cef_device_vendor", "cef_device_product", "cef_device_version",
               "cef_device_event_class", "cef_name", "cef_severity")


def events() -> list[Event]:
    """The golden inputs, and the archived one again in every status the collector knows."""
    inputs = golden_inputs()
    base = inputs["search-archived-inbound"]
    raws = [*inputs.values(), *({**base, "status": status} for status in sorted(_statuses()))]
    return [Event(parse_tracked_email(raw), "golden", FETCHED) for raw in raws]


def _statuses() -> set[str]:
    return set(STATUSES) | set(DEFAULT_SEVERITY)


def lines(renames: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Each source type's events as the formatters write them, with optional text replacements."""
    out = {ECS: [EcsFormatter().format(e) for e in events()], CEF: [CefFormatter().format(e) for e in events()]}
    for old, new in (renames or {}).items():
        out = {st: [line.replace(old, new) for line in texts] for st, texts in out.items()}
    return out


def written_fields(sourcetype: str, line: str) -> dict[str, object]:
    """The fields a line carries, read without the add-on: JSON paths, or SC4S's header split and CEF keys."""
    if sourcetype == ECS:
        return dict(json_fields(json.loads(line)))
    header = line.split("|", 7)
    return {**dict(zip(SC4S_HEADER, [header[0].removeprefix("CEF:"), *header[1:7]])), **decode(line).extension}


def cross_check(outputs: dict[str, list[str]]) -> list[str]:
    """What the add-on reads that the outputs do not write; an empty list when they agree."""
    problems = []
    for sourcetype, texts in outputs.items():
        written = [written_fields(sourcetype, line) for line in texts]
        names = set().union(*written)
        problems += [f"{sourcetype}: the add-on reads {name}, which no output writes"
                     for name in sorted(ADDON.reads(sourcetype) - names)]
        for expression in ADDON.settings(sourcetype, "EVAL-").values():
            for field, literal in comparisons(expression):
                if not any(fields.get(field) == literal for fields in written):
                    problems.append(f"{sourcetype}: the add-on expects {field}={literal}, which no output writes")
    return problems


def test_every_field_the_addon_reads_is_in_the_formatter_output() -> None:
    """Each source type reads only fields (and CEF labels) that the formatters write for it."""
    assert ADDON.reads(ECS) and ADDON.reads(CEF)
    assert cross_check(lines()) == []


def test_renaming_a_formatter_field_breaks_the_cross_check() -> None:
    """The check follows the formatters: a field or label renamed in their output is reported."""
    problems = cross_check(lines({'"local_id":': '"message_local_id":', "cs1Label=mimecastId": "cs1Label=mimecastID",
                                  " suser=": " suid="}))
    assert any("reads email.local_id" in p for p in problems)
    assert any("cs1Label=mimecastId" in p for p in problems)
    assert any("reads suser" in p for p in problems)


def test_cef_names_are_those_of_sc4s_and_splunks_cef_extraction() -> None:
    """The add-on's CEF extraction splits every line where the reference decoder does, under SC4S's names."""
    header_format = ADDON.transforms["mimecast_cef_header"]["FORMAT"]
    assert re.findall(r"(\w+)::", header_format) == [*SC4S_HEADER, "cef_extension"]
    for line in lines()[CEF]:
        extracted = ADDON.extract(CEF, line)
        reference = written_fields(CEF, line)
        assert set(extracted) - {"cef_extension"} == set(reference), line
        for key, value in decode(line).extension.items():
            assert escape_value(value) == extracted[key], (key, line)


def test_a_syslog_header_before_cef_changes_nothing(tmp_path: Path) -> None:
    """A syslog input keeps the header SC4S strips; the fields and the event time stay the same."""
    event = events()[0]
    line = CefFormatter().format(event)
    for protocol in ("rfc3164", "rfc5424"):
        message, _ = MessageBuilder(sink_config(tmp_path, protocol=protocol, transport="tcp")).build(
            line, 3, event.record.received)
        raw = message.decode("utf-8")
        assert raw != line and raw.endswith(line)
        assert ADDON.search_time(CEF, raw) == ADDON.search_time(CEF, line)
        assert ADDON.event_time(CEF, raw) == event.record.received


def _cef_text(ecs_value: object) -> object:
    """What the CEF source type can give for a text field: CEF's lossy characters, "\\\\" and "\\=" undone."""
    if not isinstance(ecs_value, str):
        return ecs_value
    return re.sub(r"\\([\\=])", r"\1", escape_value(ecs_value))


def test_every_cim_field_has_a_source_and_both_source_types_agree() -> None:
    """Each promised CIM field is defined for both source types, set on some event, and equal across them."""
    outputs = lines()
    for sourcetype in (ECS, CEF):
        assert set(CIM_FIELDS) <= ADDON.defines(sourcetype), sourcetype
    seen: dict[str, set[str]] = {ECS: set(), CEF: set()}
    for event, ecs_line, cef_line in zip(events(), outputs[ECS], outputs[CEF]):
        ecs, cef = ADDON.search_time(ECS, ecs_line), ADDON.search_time(CEF, cef_line)
        for field in CIM_FIELDS:
            assert cef.get(field) == _cef_text(ecs.get(field)), (field, event.record.id)
            seen[ECS] |= {field} if ecs.get(field) is not None else set()
            seen[CEF] |= {field} if cef.get(field) is not None else set()
        r = event.record
        recipients = [a.address for a in r.recipients if a.address]
        assert ecs.get("internal_message_id") == r.id
        assert ecs.get("src_user") == (r.sender_env.address or None)
        assert ecs.get("src") == (str(r.ip) if r.ip is not None else None)
        assert ecs.get("direction") == (r.route or None)
        assert ecs.get("recipient_count") == (str(len(recipients)) if recipients else None)
        assert ecs.get("recipient") == (recipients[0] if len(recipients) == 1 else recipients or None)
        assert ecs.get("filter_score") == (str(r.spam_score) if r.spam_score is not None else None)
        assert ecs.get("vendor_product") == "Mimecast Email Security"
    assert seen == {ECS: set(CIM_FIELDS), CEF: set(CIM_FIELDS)}


def test_each_mimecast_status_maps_to_one_cim_action() -> None:
    """One lookup row per known status, a CIM action that agrees with the outcome, the filter tag iff filtering."""
    rows = ADDON.lookups["mimecast_tracking_status"]
    assert sorted(row["vendor_action"] for row in rows) == sorted(_statuses())
    for row in rows:
        assert row["action"] in CIM_ACTIONS, row
        expected = {"success": "delivered", "failure": "blocked"}.get(outcome(row["vendor_action"]))
        assert expected in (None, row["action"]), row
    outputs = lines()
    for event, ecs_line, cef_line in zip(events(), outputs[ECS], outputs[CEF]):
        (row,) = [r for r in rows if r["vendor_action"] == event.record.status] or [None]
        for fields in (ADDON.search_time(ECS, ecs_line), ADDON.search_time(CEF, cef_line)):
            assert fields.get("action") == (row["action"] if row else None)
            assert fields.get("filter_action") == (row["filter_action"] or None if row else None)
            assert {"email", "delivery"} <= set(fields["tag"])
            assert ("filter" in fields["tag"]) == bool(row and row["filter_action"])
            assert (fields.get("signature") is not None) == bool(row and row["filter_action"] and event.record.info)


def test_event_time_is_the_events_own_timestamp() -> None:
    """TIME_PREFIX and TIME_FORMAT read @timestamp (ECS) and rt (CEF): when Mimecast received the message."""
    outputs = lines()
    for event, ecs_line, cef_line in zip(events(), outputs[ECS], outputs[CEF]):
        received = event.record.received.replace(microsecond=event.record.received.microsecond // 1000 * 1000)
        assert ADDON.event_time(ECS, ecs_line) == received
        assert ADDON.event_time(CEF, cef_line) == received
        assert "\n" not in ecs_line + cef_line and "\r" not in ecs_line + cef_line
    for sourcetype in (ECS, CEF):
        stanza = ADDON.props[sourcetype]
        assert (stanza["SHOULD_LINEMERGE"], stanza["LINE_BREAKER"]) == ("false", "([\\r\\n]+)")


def _table(text: str, first_header: str) -> list[list[str]]:
    block = re.search(rf"^\| {re.escape(first_header)} \|.*?\n\|[-| ]+\|\n((?:\|.*\|\n)+)", text, re.M)
    assert block, f"no table starting with {first_header!r}"
    return [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in block[1].splitlines()]


def _sources(sourcetype: str, field: str) -> set[str]:
    """The event fields (and label values) a CIM field is computed from, through aliases, evals and lookups."""
    aliases = dict((alias, source) for source, alias in ADDON.aliases(sourcetype))
    expression = ADDON.props[sourcetype].get(f"EVAL-{field}")
    if field in aliases:
        return {aliases[field]}
    if expression is not None:
        return ({aliases.get(name, name) for name in references(expression)}
                | {literal for _, literal in comparisons(expression)})
    (match,) = [match for match, _, outputs in ADDON.lookup_inputs(sourcetype) if field in outputs]
    return _sources(sourcetype, match)


def test_addon_readme_holds_the_mapping_tables_and_the_cim_version() -> None:
    """The README's status table is the lookup; its field table names what each source type really reads."""
    readme = (SPLUNK / "TA-mimecast-collector" / "README.md").read_text(encoding="utf-8")
    assert re.search(r"Common Information Model \(CIM\) \d+\.\d+", readme)
    statuses = {row[0].strip("`"): (row[1].strip("`"), row[2].strip("`")) for row in _table(readme, "Mimecast status")}
    assert statuses == {r["vendor_action"]: (r["action"], r["filter_action"])
                        for r in ADDON.lookups["mimecast_tracking_status"]}
    fields = {row[0].strip("`"): row[1:3] for row in _table(readme, "CIM field")}
    assert set(fields) == set(CIM_FIELDS)
    for cim, sources in fields.items():
        for sourcetype, cell in zip((ECS, CEF), sources):
            named = set(re.findall(r"`([^`]+)`", cell))
            assert named and named == _sources(sourcetype, cim), (cim, sourcetype)


def _build(out: Path) -> Path:
    done = subprocess.run(["python3", str(SPLUNK / "package.py"), "--out", str(out)], capture_output=True, text=True,
                          timeout=60, check=True)
    return Path(done.stdout.strip())


def test_package_holds_only_the_addon_and_is_reproducible(tmp_path: Path) -> None:
    """One top directory named like the app id, no hidden files, plain modes, the same bytes every time."""
    first, second = _build(tmp_path / "a"), _build(tmp_path / "b")
    assert first.name == "TA-mimecast-collector-1.0.0.tgz" and first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert {n.split("/")[0] for n in names} == {"TA-mimecast-collector"}
    assert "TA-mimecast-collector/default/props.conf" in names and "TA-mimecast-collector/app.manifest" in names
    assert not any("/." in n or "/local" in n for n in names)
    assert {m.mode for m in members} <= {0o644, 0o755} and {m.uname for m in members} == {"root"}


def appinspect() -> str:
    """The splunk-appinspect command; in CI its absence fails the test, elsewhere it skips."""
    found = shutil.which("splunk-appinspect") or str(ROOT / ".venv-appinspect" / "bin" / "splunk-appinspect")
    if Path(found).exists():
        return found
    if os.environ.get("CI"):
        pytest.fail("splunk-appinspect is missing; .ci/run installs it into .venv-appinspect")
    pytest.skip("splunk-appinspect is not installed (python3 -m venv .venv-appinspect && "
                ".venv-appinspect/bin/pip install splunk-appinspect; it needs libmagic1)")


def test_appinspect_precert_reports_no_failure_and_no_error(tmp_path: Path) -> None:
    """Splunk AppInspect in precert mode: 0 failures, 0 errors; warnings are printed with their messages."""
    command = appinspect()
    package = _build(tmp_path / "dist")
    report = tmp_path / "appinspect.json"
    done = subprocess.run([command, "inspect", str(package), "--mode", "precert", "--data-format", "json",
                           "--output-file", str(report)], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          check=False)
    assert report.exists(), done.stdout + done.stderr
    result = json.loads(report.read_text(encoding="utf-8"))
    summary = result["summary"]
    print("AppInspect precert:", ", ".join(f"{k} {v}" for k, v in summary.items()))
    flagged = [(check["name"], check["result"], [m.get("message") for m in check["messages"]])
               for group in result["reports"][0]["groups"] for check in group["checks"]
               if check["result"] in ("failure", "error", "warning", "future_failure")]
    for name, outcome_, messages in flagged:
        print(f"  {outcome_}: {name}: {messages}")
    assert (summary["failure"], summary["error"]) == (0, 0), flagged
    assert summary["success"] > 0


def test_outputs_page_names_the_source_types_and_the_package_command() -> None:
    """The Splunk recipes in docs/outputs.md set the add-on's source types and show how to build and install it."""
    section = (ROOT / "docs" / "outputs.md").read_text(encoding="utf-8").split("## Feeding Splunk", 1)[1].split("\n## ", 1)[0]
    assert f"sourcetype = {ECS}" in section and f"Mimecast_Email Security,sourcetype,{CEF}" in section
    assert "integrations/splunk/package.py" in section and "AppInspect" in section
