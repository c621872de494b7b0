"""What a batch costs, from what its state recorded, at list prices.

Every rate is a dated constant with its source. They are the pay-as-you-go prices as
listed on the Azure pricing pages in 2025, in US dollars; they could not be re-checked
offline when this was written, they differ by region and change over time, and
reservations, savings plans and free grants are left out. Check them for your region
before choosing ``LARGE_FILE_BYTES`` by cost.

A batch's cost has two parts:

- **in the Function** (Flex Consumption, on demand): the GB-seconds of every step that ran
  in-function (its duration x ``INSTANCE_MEMORY_MB``, recorded per layer), plus one
  execution per step. The orchestrator's own wake-ups and the Databricks route's submit and
  poll activities are executions too, and are not counted: at $0.40 a million they are
  worth well under a millionth of a dollar per batch;
- **on Databricks** (Jobs Compute, Premium tier): each Spark run's DBU-hours at the DBU rate,
  plus its VM-hours at the VM's own rate (Azure bills the VMs of a job cluster separately).

Nothing here imports an SDK or reads settings: the figures come from batch state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.batches import BatchState

#: When the rates below were read off the pricing pages.
RATES_AS_LISTED = "2025"

#: Azure Functions Flex Consumption, on demand: execution time, per GB-second of instance
#: memory (azure.microsoft.com/pricing/details/functions, as listed 2025).
FLEX_USD_PER_GB_SECOND = 0.000026
#: The same page: executions, per million.
FLEX_USD_PER_MILLION_EXECUTIONS = 0.40

#: Azure Databricks Jobs Compute, Premium tier, per DBU-hour
#: (azure.microsoft.com/pricing/details/databricks, as listed 2025; the Standard tier is
#: being retired in 2026). Serverless jobs are billed at their own DBU rate, VMs included.
DATABRICKS_JOBS_PREMIUM_USD_PER_DBU_HOUR = 0.30

#: The smallest job cluster: one driver and one worker.
SMALLEST_CLUSTER_NODES = 2
#: Its node, Standard_DS3_v2 (4 vCPU, 14 GiB): DBUs it burns an hour (Databricks pricing page).
DS3_V2_DBU_PER_NODE_HOUR = 0.75
#: Standard_DS3_v2 pay-as-you-go Linux, East US, per hour
#: (azure.microsoft.com/pricing/details/virtual-machines/linux, as listed 2025).
DS3_V2_USD_PER_HOUR_EAST_US = 0.293


def gb_seconds(seconds: float, memory_mb: int) -> float:
    """The GB-seconds a step used: its duration times the instance's memory in GB.

    Args:
        seconds: How long the step ran.
        memory_mb: The instance memory it ran with (``INSTANCE_MEMORY_MB``).
    """
    return round(seconds * memory_mb / 1024, 6)


@dataclass(frozen=True, slots=True)
class SparkUsage:
    """What one Databricks run used, recorded in batch state when it ended.

    Attributes:
        seconds: The run's duration, from the Jobs API's record of it.
        dbu_hours: ``seconds`` in hours x ``DATABRICKS_DBU_PER_HOUR``.
        vm_hours: ``seconds`` in hours x the cluster's nodes (0 on serverless, whose DBUs
            include the machines).
    """

    seconds: float
    dbu_hours: float
    vm_hours: float

    @classmethod
    def of(cls, seconds: float, *, dbu_per_hour: float, nodes: int) -> SparkUsage:
        """The usage of a run of ``seconds`` on a cluster of ``nodes`` burning ``dbu_per_hour``."""
        hours = seconds / 3600
        return cls(round(seconds, 3), round(hours * dbu_per_hour, 6), round(hours * nodes, 6))

    def to_dict(self) -> dict[str, float]:
        return {"seconds": self.seconds, "dbu_hours": self.dbu_hours, "vm_hours": self.vm_hours}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SparkUsage:
        return cls(float(data["seconds"]), float(data["dbu_hours"]), float(data["vm_hours"]))


@dataclass(frozen=True, slots=True)
class Cost:
    """A batch's cost in US dollars, by where it was spent."""

    functions_usd: float
    databricks_usd: float

    @property
    def total_usd(self) -> float:
        return self.functions_usd + self.databricks_usd


def functions_usd(gb_seconds: float, executions: int) -> float:
    """What Flex Consumption bills on demand for ``gb_seconds`` over ``executions``."""
    return gb_seconds * FLEX_USD_PER_GB_SECOND + executions * FLEX_USD_PER_MILLION_EXECUTIONS / 1e6


def databricks_usd(
    dbu_hours: float,
    vm_hours: float,
    *,
    usd_per_dbu_hour: float = DATABRICKS_JOBS_PREMIUM_USD_PER_DBU_HOUR,
    vm_usd_per_hour: float = DS3_V2_USD_PER_HOUR_EAST_US,
) -> float:
    """What a Databricks job costs: its DBUs and its VMs.

    Args:
        dbu_hours: DBU-hours the run used.
        vm_hours: Node-hours of the cluster's VMs.
        usd_per_dbu_hour: The DBU rate (default: Jobs Compute, Premium).
        vm_usd_per_hour: One node's VM rate (default: Standard_DS3_v2, East US); a cluster of
            another node type costs that type's rate.
    """
    return dbu_hours * usd_per_dbu_hour + vm_hours * vm_usd_per_hour


def batch_cost(batch: BatchState, *, vm_usd_per_hour: float = DS3_V2_USD_PER_HOUR_EAST_US) -> Cost:
    """A batch's cost from its state: its in-function steps and its Spark runs.

    Args:
        batch: The batch as recorded.
        vm_usd_per_hour: One cluster node's VM rate (see ``databricks_usd``).

    Returns:
        The cost of every step and run the record holds (a step re-run after a failure is
        counted once, as its latest run, the way ``durations`` keeps it).
    """
    runs = batch.spark_usage.values()
    return Cost(
        functions_usd=functions_usd(sum(batch.gb_seconds.values()), len(batch.gb_seconds)),
        databricks_usd=databricks_usd(
            sum(r.dbu_hours for r in runs), sum(r.vm_hours for r in runs), vm_usd_per_hour=vm_usd_per_hour
        ),
    )


def per_million_events(usd: float, events: int | None) -> float | None:
    """``usd`` spread over ``events``, per million; None when there were none."""
    return usd * 1e6 / events if events else None


def batch_per_million_events(batch: BatchState) -> float | None:
    """A batch's cost per million of the events it read (``rows_in``, else ``records``)."""
    events = batch.counts.rows_in if batch.counts.rows_in is not None else batch.counts.records
    return per_million_events(batch_cost(batch).total_usd, events)


def smallest_cluster_usd(seconds: float) -> float:
    """What a run of ``seconds`` costs on the smallest job cluster (two DS3_v2 nodes, Premium)."""
    hours = seconds / 3600
    return databricks_usd(
        hours * SMALLEST_CLUSTER_NODES * DS3_V2_DBU_PER_NODE_HOUR, hours * SMALLEST_CLUSTER_NODES
    )
