"""Dataset contracts, declared once and compiled by each engine."""

from __future__ import annotations

from shared.contracts.base import Contract, Expectation, Field, GoldTable, Measure
from shared.contracts.user_activity import USER_ACTIVITY

CONTRACTS: dict[str, Contract] = {USER_ACTIVITY.dataset: USER_ACTIVITY}

__all__ = ["CONTRACTS", "USER_ACTIVITY", "Contract", "Expectation", "Field", "GoldTable", "Measure"]
