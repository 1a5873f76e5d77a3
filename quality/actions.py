"""The checkpoints' alert action: a failed validation notifies the webhook and SMTP.

GX rebuilds a checkpoint's actions from its JSON (``quality/gx/checkpoints``),
so the action holds no settings of its own: the caller that runs the
checkpoint (``quality.run``) sets the alerting settings and the origin (the
Airflow task instance, or the command) for the duration of the run with
``alerting_for``. Importing this module registers the action type with GX.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from great_expectations.checkpoint.actions import ValidationAction

from core.settings import AlertingSettings
from monitoring.notify import Alert, AlertDeliveryError, Origin, send

if TYPE_CHECKING:
    from great_expectations.checkpoint.checkpoint import CheckpointResult
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
    )

log = logging.getLogger(__name__)

#: Failed expectations listed in one alert; the Data Docs page has them all.
MAX_LISTED = 12


@dataclass(frozen=True)
class AlertContext:
    """What the alert action needs at run time."""

    alerting: AlertingSettings
    origin: Origin
    interval: str
    docs_site: str | None = None


_CURRENT: ContextVar[AlertContext | None] = ContextVar("streamhouse_gx_alerting", default=None)


@contextlib.contextmanager
def alerting_for(context: AlertContext) -> Iterator[None]:
    """Alerts of the checkpoints run inside this block go to ``context``'s targets."""
    token = _CURRENT.set(context)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def describe_failures(result: ExpectationSuiteValidationResult) -> list[str]:
    """One line per failed expectation: its type, column(s) and what was unexpected."""
    lines = []
    for outcome in result.results:
        if outcome.success:
            continue
        config = outcome.expectation_config
        kwargs = dict(config.kwargs) if config is not None else {}
        target = kwargs.get("column") or kwargs.get("column_list") or kwargs.get("column_A") or ""
        details = outcome.result or {}
        if "unexpected_count" in details:
            shown = details.get("partial_unexpected_list") or []
            seen = f"{details['unexpected_count']} of {details.get('element_count', '?')} rows"
            if shown:
                seen += f", e.g. {shown[:3]}"
        elif "observed_value" in details:
            seen = f"observed {details['observed_value']!r}"
        elif outcome.exception_info and outcome.exception_info.get("raised_exception"):
            seen = f"raised {outcome.exception_info.get('exception_message', '')[:160]}"
        else:
            seen = "failed"
        kind = config.type if config is not None else "expectation"
        lines.append(f"{kind}({target}): {seen}")
    return lines


def failure_alert(checkpoint_result: CheckpointResult, context: AlertContext) -> Alert:
    """The alert for a failed checkpoint run."""
    suites, lines = [], []
    for result in checkpoint_result.run_results.values():
        if result.success:
            continue
        suites.append(result.suite_name)
        lines += [f"{result.suite_name}: {line}" for line in describe_failures(result)]
    listed = lines[:MAX_LISTED]
    if len(lines) > MAX_LISTED:
        listed.append(f"... and {len(lines) - MAX_LISTED} more")
    if context.docs_site:
        listed.append(f"Data Docs: {context.docs_site}")
    return Alert(
        title=f"GX validation failed: {', '.join(suites)} ({context.interval})",
        facts=(
            *context.origin.facts(),
            ("checkpoint", checkpoint_result.name),
            ("interval", context.interval),
        ),
        details="\n".join(listed),
        link=context.origin.log_url,
    )


class StreamhouseAlertAction(ValidationAction):
    """Send a failed (or, with ``notify_on``, any) validation to the webhook and SMTP."""

    type: Literal["streamhouse_alert"] = "streamhouse_alert"
    notify_on: Literal["all", "failure", "success"] = "failure"

    def run(
        self, checkpoint_result: CheckpointResult, action_context: Any | None = None
    ) -> dict[str, Any]:
        success = bool(checkpoint_result.success)
        wanted = self.notify_on == "all" or (self.notify_on == "failure") != success
        if not wanted:
            return {"streamhouse_alert": "not needed"}
        context = _CURRENT.get()
        if context is None:
            # Run by GX directly, outside quality.run: there is no target to send to.
            log.warning("checkpoint %s: no alerting context, no alert sent", checkpoint_result.name)
            return {"streamhouse_alert": "no alerting context"}
        try:
            delivered = send(context.alerting, failure_alert(checkpoint_result, context))
        except AlertDeliveryError as error:
            # The validation's outcome stands whatever happened to its alert.
            log.error("%s", error)
            return {"streamhouse_alert": f"failed: {error}"}
        return {"streamhouse_alert": delivered}
