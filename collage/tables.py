"""Reading parquet without pyarrow's thread pools.

`pq.read_table` goes through pyarrow's dataset layer, which starts I/O and CPU pool threads; one still
starting when a short-lived process (verify, gallery) exits aborts it with "terminate called without an
active exception" (apache/arrow#34314, seen here under load). `ParquetFile.read(use_threads=False)`
reads in the calling thread and starts none.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def read_parquet(source: bytes | str | Path, columns: list[str] | None = None) -> pa.Table:
    """A parquet file (path) or its bytes as a table, read in this thread."""
    handle = pa.BufferReader(source) if isinstance(source, bytes) else str(source)
    return pq.ParquetFile(handle).read(columns=columns, use_threads=False)
