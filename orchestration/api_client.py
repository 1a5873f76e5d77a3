"""A small client of Airflow's REST API (v2): what the demo, the CLI and the tests need.

It signs in like a person does (``POST /auth/token`` with the admin's
account) and drives runs the way an operator would: unpause, trigger with a
``day``, clear a run to rerun it, read task states and return values.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote

import httpx

from core.errors import UserFacingError

FINISHED_RUN_STATES = ("success", "failed")
ACTIVE_RUN_STATES = ("queued", "running")


@dataclass
class AirflowApi:
    """Airflow's REST API at ``base_url``, signed in as ``username``."""

    base_url: str
    username: str
    password: str
    timeout_s: float = 30.0
    _token: str | None = None

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            response = httpx.post(
                f"{self.base_url}/auth/token",
                json={"username": self.username, "password": self.password},
                timeout=self.timeout_s,
            )
            if response.status_code not in (200, 201):
                raise UserFacingError(
                    f"Airflow at {self.base_url} refused the sign-in of {self.username} "
                    f"(HTTP {response.status_code}): check `streamhouse airflow password`."
                )
            self._token = str(response.json()["access_token"])
        return {"Authorization": f"Bearer {self._token}"}

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call ``/api/v2<path>``; the decoded JSON (None for an empty answer)."""
        try:
            response = httpx.request(
                method,
                f"{self.base_url}/api/v2{path}",
                headers=self._headers(),
                timeout=self.timeout_s,
                **kwargs,
            )
        except httpx.HTTPError as error:  # the sign-in too: _headers() runs in here
            raise UserFacingError(
                f"Airflow's API at {self.base_url} did not answer ({type(error).__name__}): "
                "start it with `streamhouse stack up airflow-api`."
            ) from error
        if response.status_code >= 400:
            raise UserFacingError(
                f"Airflow's API refused {method} {path} (HTTP {response.status_code}: "
                f"{response.text[:300]})."
            )
        return response.json() if response.content else None

    def health(self) -> dict[str, Any]:
        """Airflow's own health report (``/monitor/health``): each component's status."""
        return dict(self.request("GET", "/monitor/health"))

    def wait_for_dag(self, dag_id: str, timeout_s: float = 180.0) -> dict[str, Any]:
        """The DAG once the dag-processor has parsed it."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                dag: dict[str, Any] = self.request("GET", f"/dags/{quote(dag_id)}")
                return dag
            except UserFacingError:
                if time.monotonic() > deadline:
                    raise UserFacingError(
                        f"Airflow has not parsed the DAG {dag_id} after {timeout_s:.0f} s: see "
                        "`streamhouse stack logs airflow-dag-processor` and the import errors "
                        "in the UI."
                    ) from None
                time.sleep(2.0)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.request("PATCH", f"/dags/{quote(dag_id)}", json={"is_paused": paused})

    def trigger(self, dag_id: str, conf: dict[str, Any], run_id: str | None = None) -> str:
        """A manual run (no logical date) with ``conf``; its run id."""
        body: dict[str, Any] = {"logical_date": None, "conf": conf}
        if run_id is not None:
            body["dag_run_id"] = run_id
        run = self.request("POST", f"/dags/{quote(dag_id)}/dagRuns", json=body)
        return str(run["dag_run_id"])

    def backfill_day(self, dag_id: str, day: date, conf: dict[str, Any]) -> str:
        """A backfill of the one ``day`` (its run's data interval is the day); its run id.

        A backfill's runs count against its own ``max_active_runs``, not the DAG's, so a
        scheduled run still waiting for its data (a sensor) does not hold the day back;
        a finished run of the same day is run again (``reprocess_behavior``).
        """
        start = f"{day.isoformat()}T00:00:00Z"
        self.request(
            "POST",
            "/backfills",
            json={
                "dag_id": dag_id,
                "from_date": start,
                "to_date": start,
                "dag_run_conf": conf,
                "max_active_runs": 1,
                "reprocess_behavior": "completed",
            },
        )
        answer = self.request(
            "GET",
            f"/dags/{quote(dag_id)}/dagRuns",
            params={"logical_date_gte": start, "logical_date_lte": start},
        )
        runs = [r for r in answer["dag_runs"] if r.get("state") in ACTIVE_RUN_STATES]
        if len(runs) != 1:
            raise UserFacingError(
                f"The backfill of {dag_id} for {day} left {len(runs)} active run(s) of that day "
                "instead of one: see the Backfills in Airflow's UI."
            )
        return str(runs[0]["dag_run_id"])

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "GET", f"/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}"
        )
        return result

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        answer = self.request("GET", f"/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}/taskInstances")
        return list(answer["task_instances"])

    def clear_run(self, dag_id: str, run_id: str) -> None:
        """Clear every task of a finished run: the scheduler runs it again (a rerun)."""
        self.request(
            "POST", f"/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}/clear", json={"dry_run": False}
        )

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        """A task's return value."""
        entry = self.request(
            "GET",
            f"/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}/taskInstances/{quote(task_id)}"
            "/xcomEntries/return_value",
            params={"deserialize": "true", "stringify": "false"},
        )
        return entry.get("value") if entry else None

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout_s: float,
        on_poll: Callable[[list[dict[str, Any]]], None] | None = None,
        poll_s: float = 5.0,
    ) -> str:
        """Wait until the run finishes; its state. ``on_poll`` sees the task instances."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = str(self.run(dag_id, run_id)["state"])
            if on_poll is not None:
                on_poll(self.task_instances(dag_id, run_id))
            if state in FINISHED_RUN_STATES:
                return state
            if time.monotonic() > deadline:
                raise UserFacingError(
                    f"The run {run_id} of {dag_id} is still {state} after {timeout_s:.0f} s: "
                    "see its tasks in Airflow's UI."
                )
            time.sleep(poll_s)
