"""The fuzz campaign's inputs, and the landed file each stands for.

An input is one of (its first bytes choose; the rest is the payload):

* a whole Avro container, when it starts with Avro's magic (the real Capture files and the
  generator's files seed these), or a whole Parquet file, when it starts with Parquet's;
* ``\\x00`` CSV, ``\\x01`` NDJSON (the generator's CSV and NDJSON seed these);
* ``\\x02`` bodies: the payload split at ``\\x00\\n`` into Capture records' bodies;
* ``\\x03`` a block: the next byte is the record count, the rest one block's record bytes
  after a valid header.

The selector byte's upper bits pick variants: bit 2 gzips a text payload or deflates a
block, bit 3 writes records in an order the compiled scan does not read (fastavro reads it).
"""

from __future__ import annotations

import zlib

from tests import crafted

AVRO = crafted.NAME
AVRO_MAGIC = b"Obj\x01"
PARQUET = "sa/2026/11/21/out.parquet"
PARQUET_MAGIC = b"PAR1"
NAMES = {0: "drop/2026-11-21.csv", 1: "drop/2026-11-21.ndjson"}
BODY_SEPARATOR = b"\x00\n"
CSV, NDJSON, BODIES, BLOCK = 0, 1, 2, 3
GZIP, REORDER = 4, 8


def file_of(data: bytes) -> tuple[bytes, str]:
    """The landed file (bytes, name) an input stands for."""
    if data.startswith(AVRO_MAGIC) or len(data) < 2:
        return data, AVRO
    if data.startswith(PARQUET_MAGIC):
        return data, PARQUET
    mode, variant = data[0] & 3, data[0] >> 2
    order = crafted.REORDERED if variant & (REORDER >> 2) else crafted.CAPTURE_ORDER
    payload = data[1:]
    if mode in NAMES:
        if variant & (GZIP >> 2):
            squeeze = zlib.compressobj(1, zlib.DEFLATED, 31)
            payload = squeeze.compress(payload) + squeeze.flush()
            return payload, NAMES[mode] + ".gz"
        return payload, NAMES[mode]
    codec = "deflate" if variant & (GZIP >> 2) else "null"
    if mode == 2:
        records = [
            crafted.record(i, body=b, order=order) for i, b in enumerate(payload.split(BODY_SEPARATOR))
        ]
        return crafted.container([crafted.block(records, codec=codec)], codec, order), AVRO
    count, block = payload[0], payload[1:]
    return crafted.container([crafted.block([], count=count, data=block, codec=codec)], codec, order), AVRO
