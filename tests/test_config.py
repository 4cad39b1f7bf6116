"""Configuration: every mistake reported with its dotted path, secrets never shown."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from collector.config import load_config, parse_config
from collector.config import Secret, default_config_path, format_duration, parse_duration
from collector.errors import ConfigError
from tests.conftest import run_cli, write_config

SECRET = "s3cr3t-value-never-shown"


def base(tmp_path: Path) -> dict[str, Any]:
    return {
        "mimecast": {"base_url": "https://api.services.mimecast.com",
                     "auth": {"type": "oauth2", "client_id": "cid", "client_secret": SECRET}},
        "collection": {"state_file": str(tmp_path / "state.json")},
        "watches": [{"name": "w1", "to": "example.com"}],
        "outputs": [{"name": "o1", "format": "ecs", "sink": {"type": "file", "path": str(tmp_path / "o.ndjson")}}],
    }


def problems(data: Any, tmp_path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env=env or {}, base_dir=tmp_path)
    return list(info.value.problems)


def check_three_mistakes(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``check-config`` on docs/configuration.md's example of three separate mistakes."""
    data = base(tmp_path)
    data["mimecast"]["timeout"] = "5x"
    data["collection"]["windw"] = "5m"
    data["watches"][0]["sender_ip"] = "300.1.1.1"
    return run_cli("check-config", "-c", str(write_config(tmp_path, data)))


def test_three_mistakes_are_all_reported_with_exit_78(tmp_path: Path) -> None:
    """Three separate mistakes print three dotted paths, and the process exits 78."""
    result = check_three_mistakes(tmp_path)
    assert result.returncode == 78
    for path in ("mimecast.timeout:", "collection.windw: unknown key", "watches[0].sender_ip:"):
        assert path in result.stderr
    assert "3 problems" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d["mimecast"].update(retries="five"), "mimecast.retries: expected an integer"),
    (lambda d: d["mimecast"].update(retries=99), "mimecast.retries: 99 is out of range"),
    (lambda d: d["collection"].update(interval=300), "collection.interval: expected a duration"),
    (lambda d: d["collection"].update(window="15 minutes"), "collection.window: '15 minutes' is not a duration"),
    (lambda d: d["collection"].update(lag="7h"), "collection.lag: 7h is out of range"),
    (lambda d: d["collection"].update(overlap="2d"), "collection.overlap: 2d is out of range"),
    (lambda d: d["collection"].update(initial_lookback="31d"), "collection.initial_lookback: 31d is out of range"),
    (lambda d: d["collection"].update(settle="1m"), "collection.settle: 1m is not longer than lag (2m)"),
    (lambda d: d["collection"].update(follow=["5m"]), "collection.follow[0]: 5m is not longer than settle (10m)"),
    (lambda d: d["collection"].update(follow=["2h", "1h"]), "collection.follow[1]: 1h is not longer than follow[0]"),
    (lambda d: d["collection"].update(follow=["1h", "31d"]), "collection.follow[1]: 31d is out of range"),
    (lambda d: d["collection"].update(follow="1h"), "collection.follow: expected a list of durations"),
    (lambda d: d["collection"].update(final_statuses=["done"]), "collection.final_statuses[0]: 'done' is not one of"),
    (lambda d: d.update(watches=[]), "watches: expected a non-empty list"),
    (lambda d: d["watches"].append({"name": "w1", "from": "x.com"}), "watches[1].name: duplicate name 'w1'"),
    (lambda d: d["watches"].append({"name": "w2"}), "watches[1]: needs at least one filter"),
    (lambda d: d["watches"][0].update(message_id="<a@b>"), "watches[0].message_id: cannot be combined"),
    (lambda d: d["watches"][0].update(status=["held", "lost"]), "watches[0].status[1]: 'lost' is not one of"),
    (lambda d: d["watches"][0].update(name="has space"), "watches[0].name: 'has space' must be"),
    (lambda d: d["outputs"][0].update(format="xml"), "outputs[0].format: 'xml' is not one of: ecs, cef, raw"),
    (lambda d: d["outputs"][0]["sink"].update(type="kafka"), "outputs[0].sink.type: 'kafka' is not one of"),
    (lambda d: d["outputs"][0].update(sink={"type": "syslog", "host": "h", "port": 70000}),
     "outputs[0].sink.port: 70000 is out of range"),
    (lambda d: d["outputs"][0].update(sink={"type": "syslog", "host": "h", "transport": "udp", "framing": "lf"}),
     "outputs[0].sink.framing: does not apply to udp"),
    (lambda d: d["mimecast"].update(base_url="http://mimecast.example.com"), "mimecast.base_url: must use https"),
    (lambda d: d["mimecast"]["auth"].update(type="basic"), "mimecast.auth.type: 'basic' is not one of"),
    (lambda d: d["mimecast"]["auth"].pop("client_secret"), "mimecast.auth.client_secret: is required"),
    (lambda d: d["metrics"] if d.update(metrics={"listen": "everywhere"}) else None,
     "metrics.listen: 'everywhere' is not host:port"),
    (lambda d: d.update(extra=1), "extra: unknown key"),
    # Found by the fuzz suite: each used to raise something other than a ConfigError.
    (lambda d: d["mimecast"].update(tls_verify="~nobody-here/ca.pem"), "mimecast.tls_verify: cannot expand"),
    (lambda d: d["mimecast"].update(base_url="http://[::1"), "mimecast.base_url: 'http://[::1' is not an http(s) URL"),
    (lambda d: d["collection"].update(interval="99999999999999999999999d"), "collection.interval: 9999"),
    (lambda d: d["collection"].update(state_file="a\x00b"), "collection.state_file: a path cannot contain a NUL"),
])
def test_each_mistake_names_its_dotted_path(tmp_path: Path, mutate: Any, expected: str) -> None:
    """Each kind of mistake is reported at its dotted path with the reason."""
    data = base(tmp_path)
    mutate(data)
    found = problems(data, tmp_path)
    assert any(p.startswith(expected) for p in found), found


def test_valid_config_is_typed_and_frozen(tmp_path: Path) -> None:
    """A valid file becomes frozen typed objects with defaults filled in."""
    config = parse_config(base(tmp_path), env={}, base_dir=tmp_path)
    assert config.collection.interval == timedelta(minutes=5)
    assert config.collection.lag == timedelta(minutes=2)
    assert config.mimecast.search_path == "/api/message-finder/search"
    assert config.mimecast.token_url == "https://api.services.mimecast.com/oauth/token"
    assert config.metrics.listen == ("127.0.0.1", 9464)
    with pytest.raises(AttributeError):
        config.collection.interval = timedelta(0)  # type: ignore[misc]


def test_hmac_defaults_to_the_documented_tracking_path(tmp_path: Path) -> None:
    """API 1.0 keys search /api/tracking/search unless told otherwise."""
    data = base(tmp_path)
    data["mimecast"]["auth"] = {"type": "hmac", "app_id": "a", "app_key": "k", "access_key": "ak",
                                "secret_key": "c2VjcmV0"}
    assert parse_config(data, env={}, base_dir=tmp_path).mimecast.search_path == "/api/tracking/search"


def test_secrets_come_from_env_and_files_and_never_show(tmp_path: Path) -> None:
    """${ENV} and *_file (relative to $CREDENTIALS_DIRECTORY) both work; reprs hide the values."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "client_secret").write_text(SECRET + "\n")
    data = base(tmp_path)
    data["mimecast"]["auth"] = {"type": "oauth2", "client_id": "${CID}", "client_secret_file": "client_secret"}
    config = parse_config(data, env={"CID": "from-env", "CREDENTIALS_DIRECTORY": str(creds)}, base_dir=tmp_path)
    assert config.mimecast.auth.client_id == "from-env"
    assert config.mimecast.auth.client_secret.reveal() == SECRET
    assert SECRET not in repr(config) and SECRET not in str(config.mimecast.auth.client_secret)
    assert SECRET in config.secrets()


def test_secret_files_default_to_a_credentials_folder_beside_the_config(tmp_path: Path) -> None:
    """Without $CREDENTIALS_DIRECTORY, relative *_file names are read from ./credentials beside the config."""
    (tmp_path / "credentials").mkdir()
    (tmp_path / "credentials" / "client_secret").write_text(SECRET)
    data = base(tmp_path)
    data["mimecast"]["auth"] = {"type": "oauth2", "client_id": "c", "client_secret_file": "client_secret"}
    config = load_config(write_config(tmp_path, data), env={})
    assert config.mimecast.auth.client_secret.reveal() == SECRET
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "client_secret").write_text("from-systemd")
    config = load_config(write_config(tmp_path, data), env={"CREDENTIALS_DIRECTORY": str(other)})
    assert config.mimecast.auth.client_secret.reveal() == "from-systemd"


def test_missing_env_var_and_secret_file_are_errors(tmp_path: Path) -> None:
    """An unset variable or an unreadable secret file is reported, by path."""
    data = base(tmp_path)
    data["mimecast"]["auth"] = {"type": "oauth2", "client_id": "${NOPE}", "client_secret_file": "missing"}
    found = problems(data, tmp_path)
    assert "mimecast.auth.client_id: environment variable NOPE is not set" in found
    assert any(p.startswith("mimecast.auth.client_secret_file: cannot read") for p in found)


def test_bad_secret_is_reported_without_its_value(tmp_path: Path) -> None:
    """A secret key that is not base64 is an error that does not quote it."""
    data = base(tmp_path)
    bad = "not base64 !!" + SECRET
    data["mimecast"]["auth"] = {"type": "hmac", "app_id": "a", "app_key": "k", "access_key": "x", "secret_key": bad}
    found = problems(data, tmp_path)
    assert any(p.startswith("mimecast.auth.secret_key: is not valid base64") for p in found)
    assert not any(SECRET in p for p in found)


def test_unreadable_and_invalid_yaml_files(tmp_path: Path) -> None:
    """A missing file and broken YAML are config errors, not tracebacks."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", env={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("mimecast: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(broken, env={})


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    """Latin-1 bytes in the file are reported, not raised."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes("watches: [{name: caf\xe9}]\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_config(path, env={})


def test_durations_parse_and_render() -> None:
    """Durations read as the config spells them and print back the same way."""
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("30d") == timedelta(days=30)
    assert format_duration(timedelta(minutes=90)) == "1h30m"
    for bad in ("", "5", "5x", "m5", "1.5h"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_default_config_path_follows_environment() -> None:
    """$MIMECAST_COLLECTOR_CONFIG wins over the /etc default."""
    assert default_config_path({}) == Path("/etc/mimecast-collector/config.yaml")
    assert default_config_path({"MIMECAST_COLLECTOR_CONFIG": "/x.yaml"}) == Path("/x.yaml")


def test_check_config_uses_env_default_path(tmp_path: Path) -> None:
    """Without -c, check-config reads $MIMECAST_COLLECTOR_CONFIG."""
    path = write_config(tmp_path, base(tmp_path))
    result = run_cli("check-config", env={"MIMECAST_COLLECTOR_CONFIG": str(path)})
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_secret_repr() -> None:
    """A Secret never prints its value."""
    assert repr(Secret("abc")) == "Secret('***')" and str(Secret("abc")) == "Secret('***')"


@pytest.mark.parametrize(("collection", "refused"), [
    ({"initial_lookback": "1m"}, "1m is not longer than collection.lag (2m)"),
    ({"initial_lookback": "2m"}, "2m is not longer than collection.lag (2m)"),
    ({"initial_lookback": "5m", "lag": "5m"}, "5m is not longer than collection.lag (5m)"),
    ({"initial_lookback": "1h", "lag": "6h"}, "1h is not longer than collection.lag (6h)"),
    ({"initial_lookback": "2m1s"}, None),
    ({"initial_lookback": "1m", "lag": "0s"}, None),
])
def test_a_configuration_that_can_never_collect_is_refused(tmp_path: Path, collection: dict[str, str],
                                                           refused: str | None) -> None:
    """The first search spans [now - initial_lookback, now - lag): not longer than lag, it spans nothing, no
    watermark is ever set and every poll would "succeed" with nothing searched. check-config and run say so."""
    data = base(tmp_path)
    data["collection"].update(collection)
    cfg = write_config(tmp_path, data)
    for command in ("check-config", "run") if refused else ("check-config",):
        result = run_cli(command, "-c", str(cfg))
        if refused is None:
            assert result.returncode == 0, result.stderr
            continue
        assert result.returncode == 78, result.stderr
        assert f"collection.initial_lookback: {refused}: the first search would span nothing" in result.stderr
        assert "Traceback" not in result.stderr


def test_two_writers_of_one_file_are_refused(tmp_path: Path) -> None:
    """Two file outputs on one file, or an output on the checkpoint or the dead letters, name both keys."""
    data = base(tmp_path)
    data["outputs"] += [
        {"name": "o2", "sink": {"type": "file", "path": str(tmp_path / "sub" / ".." / "o.ndjson")}},
        {"name": "o3", "sink": {"type": "file", "path": str(tmp_path / "state.json")}},
        {"name": "o4", "sink": {"type": "file", "path": str(tmp_path / "state.json.lock")}},
        {"name": "o5", "sink": {"type": "file", "path": str(tmp_path / "dead-letter.ndjson")}},
        {"name": "o6", "sink": {"type": "stdout"}}]
    found = problems(data, tmp_path)
    assert found == [
        f"outputs[1].sink.path: {tmp_path / 'sub' / '..' / 'o.ndjson'} is also outputs[0].sink.path; an output "
        "needs a file of its own (two writers would cut each other's events at start)",
        f"outputs[2].sink.path: {tmp_path / 'state.json'} is also collection.state_file; an output needs a file of "
        "its own (two writers would cut each other's events at start)",
        f"outputs[3].sink.path: {tmp_path / 'state.json.lock'} is also collection.state_file; an output needs a "
        "file of its own (two writers would cut each other's events at start)",
        f"outputs[4].sink.path: {tmp_path / 'dead-letter.ndjson'} is also collection.dead_letter_file; an output "
        "needs a file of its own (two writers would cut each other's events at start)"]


def test_overlap_is_read_as_settle_with_a_warning_never_an_error(tmp_path: Path) -> None:
    """A configuration with the deprecated overlap passes check-config, which warns and names the settle it means;
    follow ages it reaches past are dropped rather than refused."""
    data = base(tmp_path)
    data["collection"].update(overlap="1d", lag="2m")
    result = run_cli("check-config", "-c", str(write_config(tmp_path, data)))
    assert result.returncode == 0, result.stderr
    assert "warning: collection.overlap is deprecated: read as collection.settle: 1d2m" in result.stderr
    config = load_config(write_config(tmp_path, data), env={})
    assert config.collection.settle == timedelta(days=1, minutes=2) and config.collection.follow == ()
    data["collection"].update(overlap="10m", follow=["1h"])
    assert load_config(write_config(tmp_path, data), env={}).collection.follow == (timedelta(hours=1),)
