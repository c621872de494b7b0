"""The tables a contract's batches write, and where each one's commits for a batch are found."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from shared.adapters.lake import Lake, Table, TableSpec
from shared.batches import commit_id
from shared.contracts import Contract, GoldTable
from shared.pipeline import gold, schemas


@dataclass(frozen=True)
class Tables:
    """Bronze, quarantine, silver and gold of one contract, in one lake.

    Each table has a short name (``bronze``, ``silver``, ``gold.user_watch_time``): the
    key of its version in batch state and the prefix of its commit ids.
    """

    lake: Lake
    contract: Contract

    @cached_property
    def bronze(self) -> Table:
        return self.lake.table(
            TableSpec(f"bronze/{self.contract.dataset}", schemas.arrow(schemas.bronze(self.contract)))
        )

    @cached_property
    def quarantine(self) -> Table:
        return self.lake.table(
            TableSpec(f"quarantine/{self.contract.dataset}", schemas.arrow(schemas.quarantine()))
        )

    @cached_property
    def silver(self) -> Table:
        spec = TableSpec(
            f"silver/{self.contract.dataset}",
            schemas.arrow(schemas.silver(self.contract)),
            (self.contract.partition_by,),
        )
        return self.lake.table(spec)

    @cached_property
    def gold(self) -> dict[str, tuple[GoldTable, Table]]:
        """Every gold table by name, companions before the tables counted from them."""
        return {
            t.name: (
                t,
                self.lake.table(TableSpec(f"gold/{t.name}", schemas.arrow(schemas.gold(t, self.contract)))),
            )
            for t in gold.tables(self.contract)
        }

    def by_short_name(self) -> dict[str, Table]:
        """Every table by its short name, in lake order."""
        named = {"bronze": self.bronze, "quarantine": self.quarantine, "silver": self.silver}
        return named | {f"gold.{name}": table for name, (_, table) in self.gold.items()}

    def holds(self, short_name: str, batch_id: str) -> bool:
        """Whether the table holds the batch's commit (its application transaction)."""
        table = self.by_short_name().get(short_name)
        return (
            table is not None
            and table.exists()
            and table.snapshot().recorded(commit_id(short_name, batch_id))
        )
