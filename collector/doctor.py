"""``doctor``: check every connection the collector needs, and say how to fix what fails.

It only reads: no state database, lock, output file or folder is created (root running it by hand
would otherwise leave files the service's user cannot open). ``create=True`` (``doctor --create``)
first makes the missing folders of the checkpoint and of the file outputs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TextIO

from collector.config import Config, OutputConfig, WatchConfig
from collector.errors import (
    ApiFailError, AuthError, BindingExpiredError, CollectorError, EndpointNotFoundError, RateLimitedError,
    StateCorruptError, StateError, TlsError, TransientApiError,
)
from collector.mimecast.client import MimecastClient
from collector.sinks.transport import Transport, TransportError
from collector.state import StateStore
from collector.state.opening import inspect

__all__ = ["Check", "run_doctor"]

# One wide search per watch: wide enough to meet Mimecast's per-answer cap on any busy account.
_PROBE_SPAN = timedelta(days=1)


@dataclass
class Check:
    """One verdict: ``ok``, ``warn`` or ``fail``, what was seen, and the fix."""

    name: str
    status: str
    detail: str
    fix: str = ""


def run_doctor(config: Config, out: TextIO, now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
               create: bool = False) -> int:
    """Run every check, print a verdict per check, return 1 if any failed; ``create`` first makes missing folders."""
    checks = [Check("config", "ok", f"{config.source or 'configuration'} is valid")]
    if create:
        checks += _create_folders(config)
    if config.mimecast.proxy:
        checks.append(Check("proxy", "ok", f"requests to Mimecast go through {config.mimecast.proxy}"))
    checks += [_state(config)]
    checks += [_output(o) for o in config.outputs]
    client = MimecastClient(replace(config.mimecast, retries=0, max_rate_limit_wait=0.0))
    try:
        checks.append(_credentials(config, client))
        if checks[-1].status != "fail":
            checks += [_search(client, w, now(), config.collection.result_cap) for w in config.watches]
    finally:
        client.close()
    for check in checks:
        detail = check.detail.split("; ")[0] if check.fix else check.detail
        print(f"[{check.status.upper():4}] {check.name}: {detail}", file=out)
        if check.fix:
            print(f"       fix: {check.fix}", file=out)
    failed = sum(c.status == "fail" for c in checks)
    print(f"{len(checks)} checks, {failed} failed", file=out)
    return 1 if failed else 0


_CREATE = "run `mimecast-collector doctor --create` to make it (systemd makes it at start: {})"


def _create_folders(config: Config) -> list[Check]:
    folders = [config.collection.state_file.parent] + [o.sink.path.parent for o in config.outputs
                                                       if o.sink.type == "file"]
    checks = []
    for folder in dict.fromkeys(folders):
        if folder.is_dir():
            continue
        try:
            folder.mkdir(parents=True, mode=0o750)
        except OSError as exc:
            checks.append(Check(f"create {folder}", "fail", f"cannot create {folder}: {exc.strerror}",
                                "create it by hand, writable by the collector's user"))
        else:
            checks.append(Check(f"create {folder}", "ok", "created"))
    return checks


def _state(config: Config) -> Check:
    path = config.collection.state_file
    name, folder = "state", path.parent
    if not folder.is_dir():
        return Check(name, "fail", f"the state folder {folder} does not exist", _CREATE.format("StateDirectory="))
    if not os.access(folder, os.W_OK | os.X_OK):
        return Check(name, "fail", f"cannot write in {folder}: permission denied",
                     "make the folder writable by the collector's user (systemd: StateDirectory=)")
    holder = StateStore(path).holder()
    if holder is not None:
        return Check(name, "ok", f"{path} is in use by a running collector (pid {holder})")
    if not path.exists():
        return Check(name, "ok", f"{path} does not exist yet; the collector creates it at its first start")
    try:
        if inspect(path):
            return Check(name, "warn", f"{path} has the journal of an interrupted rebuild ({path.name}-journal)",
                         "start the collector: opening the checkpoint rolls the rebuild back, nothing is lost; "
                         "do not delete the journal")
    except StateCorruptError:
        return Check(name, "fail", f"{path} is corrupt",
                     "inspect it with `mimecast-collector state show`, then `mimecast-collector state reset`")
    except StateError as exc:
        return Check(name, "fail", str(exc), "check the permissions of the state folder")
    if not os.access(path, os.R_OK | os.W_OK):
        return Check(name, "fail", f"cannot write {path}: permission denied",
                     "give the file to the collector's user")
    return Check(name, "ok", f"{path} is readable and writable")


def _output(output: OutputConfig) -> Check:
    name, sink = f"output {output.name}", output.sink
    if sink.type == "stdout":
        return Check(name, "ok", "standard output")
    if sink.type == "file":
        return _file_output(name, sink.path)
    transport = Transport(sink)
    where = f"{sink.transport}://{sink.host}:{sink.port}"
    try:
        transport.send([])
        transport.check()
    except TransportError as exc:
        fix = ("check ca_file and server_name (the receiver's certificate must be signed by that CA and name the "
               "host)" if "certificate" in str(exc) else "check host and port, that the receiver listens on "
               f"{sink.transport.upper()}, and firewalls between")
        return Check(name, "fail", str(exc), fix)
    finally:
        transport.close()
    if sink.transport == "udp":
        return Check(name, "warn", f"{where}: UDP has no handshake, reachability cannot be confirmed",
                     "prefer transport: tls (or tcp) for delivery you can see")
    return Check(name, "ok", f"connected to {where}" + (" with a verified certificate" if sink.transport == "tls" else ""))


def _file_output(name: str, path: Path) -> Check:
    folder = path.parent
    if path.exists():
        if os.access(path, os.W_OK):
            return Check(name, "ok", f"{path} is writable")
        return Check(name, "fail", f"cannot append to {path}: permission denied",
                     "give the file to the collector's user (systemd: LogsDirectory=)")
    if not folder.is_dir():
        return Check(name, "fail", f"cannot append to {path}: its folder {folder} does not exist",
                     _CREATE.format("LogsDirectory="))
    if not os.access(folder, os.W_OK | os.X_OK):
        return Check(name, "fail", f"cannot append to {path}: cannot write in {folder}",
                     "make the folder writable by the collector's user (systemd: LogsDirectory=)")
    return Check(name, "ok", f"{path} does not exist yet; the collector creates it in {folder}, which is writable")


def _credentials(config: Config, client: MimecastClient) -> Check:
    try:
        fetched = client.check_credentials()
    except CollectorError as exc:
        return _api_failure("credentials", exc)
    if not fetched:
        return Check("credentials", "ok", "API 1.0 keys are signed per request; the searches below test them")
    return Check("credentials", "ok", f"API 2.0 token issued by {config.mimecast.token_url}")


def _search(client: MimecastClient, watch: WatchConfig, now: datetime, cap: int) -> Check:
    name = f"watch {watch.name}"
    end = now.replace(microsecond=0)
    try:
        found = client.search(watch, end - _PROBE_SPAN, end)
    except CollectorError as exc:
        return _api_failure(name, exc)
    seen = f"a search over the last 24 hours returned {found.count} tracked emails"
    if found.count > cap:
        return Check(name, "ok", f"{seen}: Mimecast answers with at least {found.count} records, so result_cap {cap} "
                                 f"is safe; raising it to {found.count} would save requests")
    if found.count == cap:
        return Check(name, "ok", f"{seen}, exactly result_cap: Mimecast's cap is at least {cap}, so no answer is "
                                 "cut short unseen")
    if found.count >= cap // 2:
        return Check(name, "warn", f"{seen}, below result_cap {cap}; either that is all the matching mail of a day, "
                                   f"or Mimecast cuts answers at {found.count} and records beyond it are lost",
                     f"if Mimecast's answers stop at {found.count}, set collection.result_cap to {found.count}")
    return Check(name, "ok", f"{seen} (a complete answer; too few to show Mimecast's per-answer cap)")


def _api_failure(name: str, exc: CollectorError) -> Check:
    text = str(exc)
    if isinstance(exc, BindingExpiredError):
        return Check(name, "fail", text, "in the Mimecast console, create new access and secret keys for the API "
                     "user, and set its authentication profile's cache TTL to 'Never expire'")
    if isinstance(exc, AuthError) and exc.status == 403:
        return Check(name, "fail", text, "give the API user (or API 2.0 application) the Gateway | Tracking | "
                     "Read permission")
    if isinstance(exc, AuthError):
        return Check(name, "fail", text, "check the credentials; API 1.0 keys only work on the account's regional "
                     "host (e.g. https://eu-api.mimecast.com, https://us-api.mimecast.com); API 2.0 uses "
                     "https://api.services.mimecast.com with type: oauth2")
    if isinstance(exc, RateLimitedError):
        return Check(name, "fail", text, "Mimecast's quota is spent for now; wait for the reset, and if it recurs "
                     "raise collection.interval or use fewer watches (the quota is per user or application)")
    if isinstance(exc, ApiFailError) and exc.code and "region" in exc.code:
        return Check(name, "fail", text, "base_url is not your account's region; use the host Mimecast assigned")
    if isinstance(exc, (EndpointNotFoundError, ApiFailError)) and exc.status == 404:
        return Check(name, "fail", text, "check base_url (the regional API host, without a path) and search_path "
                     "(API 1.0: /api/tracking/search, API 2.0: /api/message-finder/search)")
    if isinstance(exc, TransientApiError) and exc.error_type == "dns":
        return Check(name, "fail", text, "check the host name in base_url (and proxy) and this host's DNS resolver")
    if isinstance(exc, TransientApiError):
        return Check(name, "fail", text, "check base_url, DNS, the proxy setting and firewalls; Mimecast may "
                     "also be having an outage")
    if isinstance(exc, TlsError) and exc.error_type == "tls_protocol":
        return Check(name, "fail", text, "that port does not speak TLS: check base_url's scheme and port, and "
                     "that proxy is an http:// proxy URL unless it really speaks TLS")
    if isinstance(exc, TlsError):
        return Check(name, "fail", text, "check tls_verify (a CA bundle for a TLS-inspecting proxy) and proxy")
    return Check(name, "fail", text, "see the error above; `mimecast-collector once` logs the full detail")
