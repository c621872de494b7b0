"""The user activity logs contract: the first dataset."""

from __future__ import annotations

from shared.contracts.base import Contract, Expectation, Field, GoldTable, Measure, ip_address_regex

ACTIONS = ("play", "pause", "resume", "stop", "seek", "complete")
# Watch time, events and the first and last event: what each gold table keeps per key.
WATCH = (
    Measure("total_watch_sec", "sum", "watch_time_sec"),
    Measure("events", "count"),
    Measure("first_event_time", "min", "event_time"),
    Measure("last_event_time", "max", "event_time"),
)

USER_ACTIVITY = Contract(
    dataset="user_activity",
    fields=(
        Field("log_id", required=True),
        Field("user_id", required=True),
        Field("event_time", "timestamp", required=True),
        Field("action", required=True),
        Field("content_id", required=True),
        Field("watch_time_sec", "double", required=True),
        Field("ip_address"),
        Field("device"),
    ),
    expectations=(
        Expectation("log_id_required", "log_id IS NOT NULL AND LENGTH(TRIM(log_id)) > 0"),
        Expectation("log_id_max_64_chars", "log_id IS NULL OR LENGTH(log_id) <= 64"),
        Expectation(
            "log_id_no_control_chars",
            r"log_id IS NULL OR NOT REGEXP_LIKE(log_id, '[\x00-\x1f\x7f]')",
        ),
        Expectation("user_id_required", "user_id IS NOT NULL AND LENGTH(TRIM(user_id)) > 0"),
        # _raw_event_time is the string as received; event_time is NULL when it does not parse.
        Expectation("event_time_required", "_raw_event_time IS NOT NULL"),
        Expectation(
            "event_time_iso8601_or_epoch_ms",
            "_raw_event_time IS NULL OR event_time IS NOT NULL",
        ),
        Expectation(
            "event_time_not_before_2000",
            "event_time IS NULL OR event_time >= CAST('2000-01-01 00:00:00' AS TIMESTAMP)",
        ),
        Expectation(
            "event_time_within_1_day_of_enqueued",
            "event_time IS NULL OR _enqueued_time IS NULL OR event_time <= _enqueued_time + INTERVAL '1 day'",
        ),
        Expectation(
            "action_allowed",
            "action IN (" + ", ".join(f"'{a}'" for a in ACTIONS) + ")",
        ),
        Expectation("content_id_required", "content_id IS NOT NULL AND LENGTH(TRIM(content_id)) > 0"),
        Expectation(
            "watch_time_sec_is_number",
            "_raw_watch_time_sec IS NOT NULL AND watch_time_sec IS NOT NULL",
        ),
        Expectation(
            "watch_time_sec_0_to_86400",
            "watch_time_sec IS NULL OR watch_time_sec BETWEEN 0 AND 86400",
        ),
        Expectation(
            "ip_address_valid",
            f"ip_address IS NULL OR REGEXP_LIKE(ip_address, '{ip_address_regex()}')",
        ),
    ),
    key=("log_id",),
    partition_by="event_date",
    partition_source="event_time",
    geo_ip_field="ip_address",
    gold=(
        GoldTable("user_watch_time", ("user_id",), WATCH),
        GoldTable("daily_user_watch_time", ("event_date", "user_id"), WATCH),
        GoldTable(
            "region_daily_watch_time",
            ("event_date", "region"),
            (
                Measure("total_watch_sec", "sum", "watch_time_sec"),
                Measure("events", "count"),
                Measure("users", "distinct", "user_id", via="daily_region_users"),
            ),
        ),
    ),
)
