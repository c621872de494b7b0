"""``python -m tests.fuzz.seeds DIR``: write the fuzz campaign's seeds from the generator.

The real Capture files are not copied here: ``make fuzz`` hands their folder to libFuzzer
as a second corpus, read in place. These seeds add what they lack: defect-laden Capture
files of both codecs and Properties schemas, CSV and NDJSON landing files, bodies and
single blocks in the harness's input forms (``tests.fuzz.forms``).
"""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

import fastavro

from shared.dev import generator
from tests import crafted
from tests.fuzz.forms import BLOCK, BODIES, BODY_SEPARATOR, CSV, GZIP, NDJSON, REORDER


def seeds() -> list[bytes]:
    """Every seed input, small enough for libFuzzer's ``-max_len``."""
    out: list[bytes] = []
    for made in generator.generate_day(files=4, events_per_file=40, defect_rate=0.4, seed=3):
        out.append(made.data)
    for codec in ("null", "deflate"):
        out.append(generator.generate_capture_file(events=30, seed=5, codec=codec, defect_rate=0.3).data)
    records = [
        generator.capture_record(crafted.event(i), sequence_number=i, offset=i, enqueued=crafted.ENQUEUED)
        for i in range(5)
    ]
    out.append(generator.write_capture(records, properties_variant="classic", codec="null"))
    events = generator.clean_events(12, seed=6)
    out.append(generator.to_parquet_stream_analytics(events, partition_id=2, enqueued=crafted.ENQUEUED))
    for variant in (0, GZIP):
        out.append(bytes([CSV | variant]) + generator.to_csv(events))
        out.append(bytes([NDJSON | variant]) + generator.to_ndjson(events))
    defective = generator.generate_capture_file(events=60, seed=8, codec="null", defect_rate=0.5)
    bodies = [r["Body"] or b"" for r in fastavro.reader(io.BytesIO(defective.data))]  # type: ignore[index]
    for start in range(0, len(bodies), 12):
        out.append(bytes([BODIES]) + BODY_SEPARATOR.join(bodies[start : start + 12]))
    for variant in (0, GZIP, REORDER):
        order = crafted.REORDERED if variant & REORDER else crafted.CAPTURE_ORDER
        for count in (1, 4):
            block = b"".join(crafted.record(i, order=order) for i in range(count))
            out.append(bytes([BLOCK | variant, count]) + block)
    out.append(
        bytes([BLOCK, 2]) + crafted.record(0, Properties=crafted.long(-1) + crafted.long(3) + b"\x02a\x00")
    )
    return out


def main(directory: str) -> None:
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    for seed in seeds():
        (target / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    print(f"fuzz: {len(seeds())} seeds in {target}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
