"""Builds the per-request services the voice webhooks use, from the app's extensions.

One place wires the database session, Redis, delivery channels and settings into
the Flask-free services (codes, verification, number changes), so the views only
ask for what they need.
"""

from __future__ import annotations

from flask import current_app

from ivr.calls import outbound, runtime
from ivr.customers.directory import SqlDirectory
from ivr.delivery import registry as delivery
from ivr.flow.engine import Engine
from ivr.flow.model import Catalog
from ivr.hours import status as hours_status
from ivr.jobs.deliveries import send_later
from ivr.numberchange.rules import NumberRules
from ivr.numberchange.service import NumberChanges
from ivr.storage import db, deferred, kv
from ivr.verification.codes import CONFIRM_NUMBER, VERIFY, CodeService, policy_for
from ivr.verification.digits import DigitFailures
from ivr.verification.verifier import CodeVerifier
from ivr.versions.store import LoadedFlow
from ivr.voice.urls import callback_urls


def codes(purpose: str) -> CodeService:
    rt = runtime.get()
    return CodeService(kv.client(), rt.settings.secret_key, policy_for(purpose, rt.settings))


def placer(*, background: bool = False) -> outbound.Placer:
    return outbound.Placer(delivery.get_dialer(background=background), callback_urls)


def number_changes(
    directory: SqlDirectory | None = None,
    catalog: Catalog | None = None,
    *,
    background: bool = False,  # in a job: delivery with longer timeouts
) -> NumberChanges:
    rt = runtime.get()
    return NumberChanges(
        session=db.session(),
        directory=directory or SqlDirectory(db.session()),
        codes=codes(CONFIRM_NUMBER),
        placer=placer(background=background),
        rules=NumberRules.from_settings(rt.settings),
        channels=delivery.get(background=background),
        catalog=catalog or rt.catalog,
        support_number=rt.settings.support_number,
        later=send_later,
    )


def engine(loaded: LoadedFlow) -> Engine:
    """An engine for this request on one version of the flow, with the database directory,
    codes and number changes speaking that version's prompts, the digit limits and the
    line's emergency closure."""
    rt = runtime.get()
    directory = SqlDirectory(db.session(), autocommit=True)  # lookups only: no transaction
    verifier = CodeVerifier(codes(VERIFY), delivery.get(), directory, loaded.catalog, placer())
    built = rt.engine(loaded, directory, verifier, number_changes(catalog=loaded.catalog))
    built.digit_limits = digit_limits()
    # The emergency closure of the line this service answers (IVR_FLOW), whatever version
    # the call runs on; read only when a schedule node asks, cached per worker.
    built.line_status = hours_status.line_status(rt.settings.flow)
    built.line_clock = current_app.extensions.get(hours_status.LINE_CLOCK)
    return built


def digit_limits() -> DigitFailures:
    """Wrong account digits counted across calls in Redis, each one audited."""
    settings = runtime.get().settings
    return DigitFailures(
        kv.client(),
        db.session(),
        settings.secret_key,
        settings.digits_max_failures,
        defer=deferred.later,
    )
