"""The composition root: the only place that builds adapters and services.

``build(settings)`` returns an ``App`` whose parts are built on first use, so a function
that only needs batch state (Event Grid intake, the HTTP views) never imports the data
stack (polars, deltalake, pyarrow), and a cold instance pays only for what its first
invocation touches. The blueprints share one ``App`` per process (``shared.blueprints.app``).

Accounts that sign in with an identity get their token credential from ``identity``:
the app's managed identity in production, a test's own token source in tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from shared.adapters.clients import Identity, managed_identity
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.adapters.lake import Lake
    from shared.adapters.ledger import RunLedger
    from shared.adapters.state import BatchStateStore
    from shared.adapters.storage import Storage
    from shared.layers.context import Context
    from shared.services.admin import Admin
    from shared.services.databricks import DatabricksRoute
    from shared.services.intake import Intake
    from shared.services.runner import Runner


@dataclass(frozen=True)
class App:
    """Every collaborator of the pipeline, wired once."""

    settings: Settings
    identity: Identity = managed_identity

    @cached_property
    def storage(self) -> Storage:
        from shared.adapters.storage import Storage

        s = self.settings
        return Storage(s.lake_storage, retry_seconds=s.storage_retry_seconds, identity=self.identity)

    @cached_property
    def states(self) -> BatchStateStore:
        from shared.adapters.state import BatchStateStore

        s = self.settings
        return BatchStateStore(
            s.host_storage, s.state_table, retry_seconds=s.storage_retry_seconds, identity=self.identity
        )

    @cached_property
    def ledger(self) -> RunLedger:
        from shared.adapters.ledger import RunLedger

        s = self.settings
        return RunLedger(
            s.host_storage, s.operations_table, retry_seconds=s.storage_retry_seconds, identity=self.identity
        )

    @cached_property
    def lake(self) -> Lake:
        from shared.adapters.clients import delta_storage_options
        from shared.adapters.lake import Lake
        from shared.uris import is_remote, locate

        s = self.settings
        root = s.lake_uri

        def prepare() -> None:
            self.storage.ensure_container(locate(root, s.lake_storage.name).container)

        return Lake(
            root,
            storage_options=lambda: delta_storage_options(s.lake_storage, self.identity),
            commit_retries=s.delta_commit_retries,
            prepare=prepare if is_remote(root) else None,
            retry_seconds=s.storage_retry_seconds,
            lock=self.storage.lock,
        )

    @cached_property
    def context(self) -> Context:
        """What the layers run with."""
        from shared.layers.context import Context

        return Context(self.settings, self.storage, self.states, self.lake)

    @cached_property
    def intake(self) -> Intake:
        from shared.services.intake import Intake

        return Intake(self.settings, self.storage, self.states, self.ledger)

    @cached_property
    def admin(self) -> Admin:
        from shared.services.admin import Admin

        return Admin(self.settings, self.states, self.ledger)

    @cached_property
    def databricks(self) -> DatabricksRoute:
        """The large-file route; the workspace client is built on the first submit."""
        from shared.adapters.databricks import DatabricksJobs
        from shared.services.databricks import DatabricksRoute

        jobs: list[DatabricksJobs] = []

        def workspace() -> DatabricksJobs:
            if not jobs:  # DatabricksNotConfigured when no workspace is set: the batch ends FAILED
                jobs.append(DatabricksJobs(self.settings.databricks))
            return jobs[0]

        return DatabricksRoute(self.context, workspace)

    @cached_property
    def runner(self) -> Runner:
        from shared.services.runner import Runner

        return Runner(self.context, databricks=self.databricks)


def build(settings: Settings, *, identity: Identity = managed_identity) -> App:
    """The app for ``settings``; nothing is connected until a part is first used.

    Args:
        settings: Every setting.
        identity: The token credential of each account that signs in with an identity.
    """
    return App(settings, identity)
