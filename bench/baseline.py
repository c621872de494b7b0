"""The obvious implementation, kept as the benchmark's yardstick.

It is what one writes first: fastavro yields records, ``json.loads`` parses each body, a
pandas DataFrame holds the whole file, pandas checks the contract's rules, deltalake
writes bronze, and ``drop_duplicates`` / ``groupby`` make silver and gold. Everything is
in memory at once, so its peak RSS grows with the file. It is deliberately not optimised:
the harness measures the in-function route against it, side by side, in the same run.

pandas is a benchmark-only dependency (requirements-bench.txt); nothing in ``shared/``
imports this module.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import fastavro
import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from shared.contracts.base import ip_address_regex
from shared.contracts.user_activity import ACTIONS, USER_ACTIVITY
from shared.pipeline import geo

FIELDS = USER_ACTIVITY.field_names


def _events(body: bytes | None) -> list[dict[str, Any]] | None:
    if body is None:
        return None
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        try:
            values = [json.loads(line) for line in body.splitlines() if line.strip()]
        except (ValueError, UnicodeDecodeError):
            return None
        return values if len(values) > 1 and all(isinstance(v, dict) for v in values) else None
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return value
    return None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def read_capture(path: Path) -> pd.DataFrame:
    """Every event of a Capture file as one DataFrame of strings plus lineage."""
    rows: list[dict[str, Any]] = []
    with path.open("rb") as fh:
        for i, record in enumerate(fastavro.reader(fh)):
            enqueued = record["SystemProperties"].get("x-opt-enqueued-time")
            lineage = {
                "_sequence_number": record["SequenceNumber"],
                "_offset": record["Offset"],
                "_enqueued_ms": enqueued,
                "_row": i,
            }
            events = _events(record["Body"])
            if events is None:
                body = record["Body"] or b""
                rows.append({"_raw": body.decode("utf-8", "backslashreplace"), "_malformed": True, **lineage})
                continue
            for event in events:
                row = {name: _text(event.get(name)) for name in FIELDS}
                extra = {k: v for k, v in event.items() if k not in FIELDS}
                row["_rescued_data"] = json.dumps(extra) if extra else None
                row["_raw"] = record["Body"].decode() if len(events) == 1 else json.dumps(event)
                row["_malformed"] = False
                row.update(lineage)
                rows.append(row)
    frame = pd.DataFrame(rows)
    for name in (*FIELDS, "_rescued_data"):
        if name not in frame:
            frame[name] = None
    frame["_enqueued_time"] = pd.to_datetime(frame["_enqueued_ms"], unit="ms", utc=True)
    return frame


def validate(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The contract's rules, hand-written in pandas: (valid, quarantined)."""
    failed = pd.DataFrame(index=frame.index)
    log_id = frame["log_id"].astype("string")
    failed["log_id_required"] = log_id.isna() | (log_id.str.strip().str.len() == 0)
    failed["log_id_max_64_chars"] = log_id.str.len().fillna(0) > 64
    failed["log_id_no_control_chars"] = log_id.str.contains(r"[\x00-\x1f\x7f]", regex=True).fillna(False)
    user = frame["user_id"].astype("string")
    failed["user_id_required"] = user.isna() | (user.str.strip().str.len() == 0)
    raw_time = frame["event_time"].astype("string").str.strip()
    epoch = raw_time.str.fullmatch(r"-?\d{1,15}").fillna(False)
    as_epoch = pd.to_datetime(pd.to_numeric(raw_time.where(epoch), errors="coerce"), unit="ms", utc=True)
    as_iso = pd.to_datetime(raw_time.where(~epoch), format="ISO8601", utc=True, errors="coerce")
    # Naive ISO strings parse too; the contract wants an explicit zone.
    has_zone = raw_time.str.contains(r"(?:[zZ]|[+-]\d{2}:?\d{2})$", regex=True).fillna(False)
    event_time = as_epoch.where(epoch, as_iso.where(has_zone))
    frame = frame.assign(event_time_typed=event_time)
    failed["event_time_required"] = raw_time.isna()
    failed["event_time_iso8601_or_epoch_ms"] = raw_time.notna() & event_time.isna()
    failed["event_time_not_before_2000"] = event_time < pd.Timestamp("2000-01-01", tz="UTC")
    limit = frame["_enqueued_time"] + pd.Timedelta(days=1)
    failed["event_time_within_1_day_of_enqueued"] = (event_time > limit).fillna(False)
    failed["action_allowed"] = ~frame["action"].isin(ACTIONS)
    content = frame["content_id"].astype("string")
    failed["content_id_required"] = content.isna() | (content.str.strip().str.len() == 0)
    watch = pd.to_numeric(frame["watch_time_sec"], errors="coerce")
    frame = frame.assign(watch_time_typed=watch)
    failed["watch_time_sec_is_number"] = watch.isna()
    failed["watch_time_sec_0_to_86400"] = (watch < 0) | (watch > 86400)
    ip = frame["ip_address"].astype("string")
    failed["ip_address_valid"] = ip.notna() & ~ip.str.fullmatch(ip_address_regex()[1:-1]).fillna(False)
    failed = failed.fillna(True).astype(bool)
    failed["malformed_body"] = frame["_malformed"].astype(bool)
    bad = failed.any(axis=1)
    reasons = failed[bad].apply(lambda row: ",".join(row.index[row]), axis=1)
    quarantined = frame.loc[bad, ["_raw", "_sequence_number", "_offset", "_enqueued_time", "_row"]]
    quarantined = quarantined.assign(reason=reasons)
    return frame.loc[~bad], quarantined


def _write(uri: Path, frame: pd.DataFrame, mode: str, partition_by: list[str] | None = None) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    write_deltalake(
        str(uri),
        table,
        mode=mode,
        partition_by=partition_by,
        schema_mode="overwrite" if mode == "overwrite" else None,
    )  # type: ignore[arg-type]


def run(path: Path, lake: Path) -> dict[str, Any]:
    """Ingest one Capture file into ``lake`` the obvious way; returns step timings."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    frame = read_capture(path)
    timings["decode"] = time.perf_counter() - started

    mark = time.perf_counter()
    valid, quarantined = validate(frame)
    timings["validate"] = time.perf_counter() - mark

    mark = time.perf_counter()
    bronze = valid[[*FIELDS, "_rescued_data", "_sequence_number", "_offset", "_enqueued_time", "_row"]]
    _write(lake / "bronze", bronze, "append")
    if len(quarantined):
        _write(lake / "quarantine", quarantined, "append")
    timings["bronze"] = time.perf_counter() - mark

    mark = time.perf_counter()
    silver = valid.drop_duplicates(subset=["log_id"], keep="first").copy()
    silver["event_time"] = silver.pop("event_time_typed")
    silver["watch_time_sec"] = silver.pop("watch_time_typed")
    silver["event_date"] = silver["event_time"].dt.strftime("%Y-%m-%d")
    silver["country"] = silver["ip_address"].map(geo.country_of)
    silver["region"] = silver["country"].map(geo.region_of)
    silver_uri = lake / "silver"
    if (silver_uri / "_delta_log").is_dir():
        existing = DeltaTable(str(silver_uri)).to_pandas(columns=["log_id"])
        silver = silver[~silver["log_id"].isin(existing["log_id"])]
    columns = [
        *FIELDS,
        "event_date",
        "country",
        "region",
        "_rescued_data",
        "_sequence_number",
        "_offset",
        "_enqueued_time",
        "_row",
    ]
    _write(silver_uri, silver[columns], "append", partition_by=["event_date"])
    timings["silver"] = time.perf_counter() - mark

    mark = time.perf_counter()
    everything = DeltaTable(str(silver_uri)).to_pandas()
    daily = (
        everything.groupby(["event_date", "user_id"])
        .agg(
            total_watch_sec=("watch_time_sec", "sum"),
            events=("log_id", "count"),
            first_event_time=("event_time", "min"),
            last_event_time=("event_time", "max"),
        )
        .reset_index()
    )
    users = (
        daily.groupby("user_id")
        .agg(
            total_watch_sec=("total_watch_sec", "sum"),
            events=("events", "sum"),
            first_event_time=("first_event_time", "min"),
            last_event_time=("last_event_time", "max"),
        )
        .reset_index()
    )
    regions = (
        everything.groupby(["event_date", "region"])
        .agg(
            total_watch_sec=("watch_time_sec", "sum"),
            events=("log_id", "count"),
            users=("user_id", "nunique"),
        )
        .reset_index()
    )
    for name, table in (
        ("daily_user_watch_time", daily),
        ("user_watch_time", users),
        ("region_daily_watch_time", regions),
    ):
        _write(lake / "gold" / name, table, "overwrite")
    timings["gold"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started
    return {
        "durations": {k: round(v, 3) for k, v in timings.items()},
        "rows_in": len(frame),
        "rows_valid": len(valid),
        "rows_quarantined": len(quarantined),
        "silver_rows": len(silver),
    }
