"""The floor: the least a poller can do. The same searches with requests, parse the JSON, and write each
record back as one JSON line; no transformation, de-duplication or state.

    python benchmarks/floor.py BASE_URL CLIENT_ID CLIENT_SECRET START END WINDOW_S OUT
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta

import requests


def main(argv: list[str]) -> int:
    """Run the floor loop; print how many records it wrote."""
    base_url, client_id, client_secret, start_s, end_s, window_s, out = argv
    session = requests.Session()
    token = session.post(f"{base_url}/oauth/token", data={"client_id": client_id, "client_secret": client_secret,
                                                           "grant_type": "client_credentials"}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    start, end, window = datetime.fromisoformat(start_s), datetime.fromisoformat(end_s), timedelta(seconds=int(window_s))
    written = 0
    with open(out, "w", encoding="utf-8") as f:
        while start < end:
            stop = min(start + window, end)
            body = {"data": [{"start": start.strftime("%Y-%m-%dT%H:%M:%S+0000"),
                              "end": stop.strftime("%Y-%m-%dT%H:%M:%S+0000"),
                              "advancedTrackAndTraceOptions": {"to": "example.com"}}]}
            payload = session.post(f"{base_url}/api/message-finder/search", json=body, headers=headers).json()
            for record in payload["data"][0]["trackedEmails"]:
                f.write(json.dumps(record) + "\n")
                written += 1
            start = stop
    print(written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
