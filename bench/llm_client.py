"""Streams chat completions from a base URL and prints time to first byte and total time per request.

Plain http.client, so that the client's own cost is small and the same for every target."""

import http.client
import json
import sys
import time
from urllib.parse import urlsplit

base, key, rounds = urlsplit(sys.argv[1]), sys.argv[2], int(sys.argv[3])
body = json.dumps({"model": "long", "stream": True, "messages": [{"role": "user", "content": "count"}]})
connection = http.client.HTTPConnection(base.hostname, base.port, timeout=30)
for _ in range(rounds):
    started = time.perf_counter()
    connection.request("POST", f"{base.path}/v1/chat/completions", body=body,
                       headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    response = connection.getresponse()
    first = None
    received = 0
    while True:
        data = response.read1(65536)
        if not data:
            break
        first = first or time.perf_counter()
        received += len(data)
    print(json.dumps({"ttfb": first - started, "total": time.perf_counter() - started, "bytes": received}))
