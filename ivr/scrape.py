"""`/metrics`: the Prometheus scrape, its access check, and what is read at scrape time
(what is counted lives in `ivr/metrics`, which the storage and job code import).

Access (docs/operations.md, "Metrics and logs"):
- neither IVR_METRICS_TOKEN nor IVR_METRICS_ALLOW set: 404, as if there were no route;
- `Authorization: Bearer <IVR_METRICS_TOKEN>` (compared in constant time): allowed;
  a bearer token that is wrong: 401, from any address;
- no token sent, from an address in IVR_METRICS_ALLOW (`request.remote_addr`, which
  ProxyFix sets from X-Forwarded-For when IVR_PROXY_HOPS says to): allowed;
- otherwise 401 with `WWW-Authenticate: Bearer` when a token is configured (a token
  would help), 403 when only the allow list is.

What is scraped: under gunicorn (PROMETHEUS_MULTIPROC_DIR set) the values every worker
wrote to that folder, added up by prometheus-client's MultiProcessCollector; otherwise
this process's default registry (`ivr run`, tests). Beside them, read now:
`ivr_flow_live_info{flow, version} 1`, the version new calls start on as this worker
sees it (prometheus-client's Info does not work across processes, so it is computed
at scrape time), and `ivr_jobs_failed_registry`, the jobs that failed for good and are
still listed (`ivr jobs failed`) — counted in Redis, so it covers a worker process that
/metrics does not see.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from collections.abc import Iterable, Iterator

from flask import Blueprint, Flask, Response, abort, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from ivr.calls import runtime
from ivr.config_observe import ObserveSettings
from ivr.jobs import queue as jobqueue

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("/metrics")
def scrape() -> Response:
    """The metrics in Prometheus' text format, to whoever may read them."""
    settings: ObserveSettings = current_app.config["IVR_SETTINGS"].observe
    _check_access(settings)
    registry = scrape_registry(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    return Response(generate_latest(registry), mimetype=None, content_type=CONTENT_TYPE_LATEST)


def _check_access(settings: ObserveSettings) -> None:
    if not settings.metrics_enabled:
        abort(404)
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and presented.strip():
        if settings.metrics_token and hmac.compare_digest(
            presented.strip().encode(), settings.metrics_token.encode()
        ):
            return
        _refuse(401)
    if _allowed_address(request.remote_addr, settings):
        return
    _refuse(401 if settings.metrics_token else 403)


def _allowed_address(address: str | None, settings: ObserveSettings) -> bool:
    if not address or not settings.metrics_allow:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:10.0.0.5 is 10.0.0.5
    return any(ip in network for network in settings.metrics_allow)


def _refuse(status: int) -> None:
    response = Response(
        "Unauthorized\n" if status == 401 else "Forbidden\n", status=status, mimetype="text/plain"
    )
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
    abort(response)


def scrape_registry(multiproc_dir: str | None) -> CollectorRegistry:
    """A registry for one scrape: every worker's values (or this process's), and the
    values read now."""
    registry = CollectorRegistry(auto_describe=False)
    if multiproc_dir:
        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(_ReadNow(current_app._get_current_object()))  # type: ignore[attr-defined]
    return registry


class _Forward(Collector):
    """Another registry's metrics, as one collector of this one."""

    def __init__(self, source: CollectorRegistry):
        self.source = source

    def collect(self) -> Iterable[Metric]:
        return self.source.collect()


class _ReadNow(Collector):
    """The values read at scrape time: the live flow version and the failed jobs."""

    def __init__(self, app: Flask):
        self.app = app

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily(
            "ivr_flow_live",
            "The flow version new calls start on, as this worker sees it.",
            labels=["flow"],
        )
        try:
            loaded = runtime.get().live()
            info.add_metric([loaded.flow.name], {"version": str(loaded.flow.version)})
        except Exception as exc:  # a scrape still answers; the flow is simply absent
            log.warning("metrics: live flow version unknown (%s)", type(exc).__name__)
        yield info
        failed = GaugeMetricFamily(
            "ivr_jobs_failed_registry",
            "Jobs that failed for good and are still listed by `ivr jobs failed`.",
        )
        try:
            registry = jobqueue.get(self.app).queue.failed_job_registry
            failed.add_metric([], registry.get_job_count(cleanup=False))  # one ZCARD
        except Exception as exc:
            log.warning("metrics: failed jobs not counted (%s)", type(exc).__name__)
        else:
            yield failed
