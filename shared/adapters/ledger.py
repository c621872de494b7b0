"""The operations table: orchestration start claims and maintenance records.

A start claim is an insert: Table Storage inserts are atomic, so of N deliveries of the
same event that race to start a batch, exactly one inserts the claim. A claim whose
start never happened (its winner crashed) goes stale after ``CLAIM_STALE_AFTER``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import cached_property
from itertools import islice
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.adapters.blobs import outlast
from shared.adapters.clients import Identity, managed_identity, table_client
from shared.settings import StorageAccount

if TYPE_CHECKING:
    from azure.data.tables import TableClient

CLAIM_STALE_AFTER = timedelta(minutes=15)


class RunLedger:
    """Start claims (partition ``run``) and maintenance records (partition ``maintenance``)."""

    RUNS = "run"
    MAINTENANCE = "maintenance"

    def __init__(
        self,
        account: StorageAccount,
        table: str,
        *,
        retry_seconds: float = 60.0,
        identity: Identity = managed_identity,
    ) -> None:
        self.account = account
        self.table = table
        self.retry_seconds = retry_seconds
        self.identity = identity

    @cached_property
    def client(self) -> TableClient:
        return self._outlast(lambda: table_client(self.account, self.table, self.identity))

    def _outlast(self, call: Any) -> Any:
        return outlast(f"{self.account.table_uri}/{self.table}", call, self.retry_seconds)

    def claim(self, batch_id: str, *, force: bool = False, now: datetime | None = None) -> bool:
        """Claim the right to start ``batch_id``'s orchestration; True for exactly one caller.

        Args:
            batch_id: The batch (and orchestration instance) id.
            force: An operator replay: take the claim whatever its age.
            now: The current time (tests).
        """
        now = now or datetime.now(UTC)
        entity = {"PartitionKey": self.RUNS, "RowKey": batch_id, "claimed_at": now.isoformat(), "starts": 1}
        try:
            self._outlast(lambda: self.client.create_entity(entity))
            return True
        except ResourceExistsError:
            pass
        try:
            existing = self._outlast(lambda: self.client.get_entity(self.RUNS, batch_id))
        except ResourceNotFoundError:
            return False
        claimed_at = datetime.fromisoformat(str(existing.get("claimed_at")))
        if not force and now - claimed_at < CLAIM_STALE_AFTER:
            return False
        entity["starts"] = int(existing.get("starts", 1)) + 1
        try:
            self._outlast(
                lambda: self.client.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=existing.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
            )
        except HttpResponseError as exc:
            if exc.status_code == 412:  # another caller took it first
                return False
            raise
        return True

    def record_maintenance(self, summary: dict[str, Any], at: datetime) -> None:
        """Store one maintenance run; newest first in the partition."""
        inverted = f"{10**13 - int(at.timestamp() * 1000):013d}"
        entity = {
            "PartitionKey": self.MAINTENANCE,
            "RowKey": inverted,
            "at": at.isoformat(),
            "summary": json.dumps(summary, sort_keys=True, default=str)[:30_000],
        }
        self._outlast(lambda: self.client.upsert_entity(entity))

    def maintenance_runs(self, limit: int = 10) -> list[dict[str, Any]]:
        """The latest maintenance runs, newest first."""
        query = "PartitionKey eq @p"
        rows = self._outlast(
            lambda: list(islice(self.client.query_entities(query, parameters={"p": self.MAINTENANCE}), limit))
        )
        return [{"at": row["at"], **json.loads(row["summary"])} for row in rows]
