"""What engineers see of the running service: Prometheus metrics and JSON log lines.

- `registry`: the metric objects (created once per process) and the one-line counting
  helpers that storage, delivery and jobs call;
- `calls`: counting calls, verifications, codes and call-backs from timeline steps;
- `requests`: the request hooks (latency per endpoint, the CallSid of the request);
- `logs`: the log format (text, or one JSON object per line with the CallSid).

`/metrics` itself (its access check, the scrape-time collectors) is `ivr/scrape.py`,
above the code it reads. This file imports nothing: `ivr.storage` and `ivr.delivery`
import `registry`, so the package itself must stay empty.
"""
