"""Asset manifests: one parquet file per asset set, one row per asset.

A row says what an asset is (id, kind, prompt name), where its bytes come from (source package or
path), under which licence, and how to check it (sha256, size). Rows never hold pixels.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import UserError
from ..tables import read_parquet

KINDS = ("sticker", "cutout", "background", "font")

# `extra` is a json string for per-source details (emoji text, COCO polygon, procedural recipe).
MANIFEST_COLUMNS: dict[str, pa.DataType] = {
    "id": pa.string(),
    "kind": pa.string(),
    "name": pa.string(),
    "source": pa.string(),
    "path": pa.string(),
    "license": pa.string(),
    "attribution": pa.string(),
    "sha256": pa.string(),
    "bytes": pa.int64(),
    "width": pa.int32(),
    "height": pa.int32(),
    "extra": pa.string(),
}
SCHEMA = pa.schema(list(MANIFEST_COLUMNS.items()))

DEFAULT_MANIFEST_DIR = Path(__file__).resolve().parents[2] / "assets_manifest"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(rows: Iterable[dict], path: str | Path) -> int:
    """Write rows sorted by id (so the same assets give the same bytes); returns the row count."""
    rows = sorted(rows, key=lambda r: r["id"])
    ids = [r["id"] for r in rows]
    if len(ids) != len(set(ids)):
        raise ValueError(f"duplicate asset ids in {path}")
    columns = {name: [r.get(name) for r in rows] for name in MANIFEST_COLUMNS}
    columns["extra"] = [e if isinstance(e, str) or e is None else json.dumps(e, sort_keys=True) for e in columns["extra"]]
    table = pa.table(columns, schema=SCHEMA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)
    return len(rows)


def load_manifests(directory: str | Path | None = None) -> list[dict]:
    """All rows of every `*.parquet` manifest in `directory`, sorted by id."""
    directory = Path(directory) if directory else DEFAULT_MANIFEST_DIR
    files = sorted(directory.glob("*.parquet"))
    if not files:
        raise UserError(f"no asset manifests in {directory}: run `collage assets build` first")
    rows: list[dict] = []
    for file in files:
        try:
            table = read_parquet(file)
        except Exception as exc:  # a broken manifest is a user-facing problem, not a traceback
            raise UserError(f"asset manifest {file} is unreadable ({exc}); rebuild it with `collage assets build`") from None
        missing = set(MANIFEST_COLUMNS) - set(table.column_names)
        if missing:
            raise UserError(f"asset manifest {file} lacks columns {sorted(missing)}; rebuild it with `collage assets build`")
        rows.extend(table.select(list(MANIFEST_COLUMNS)).to_pylist())
    rows.sort(key=lambda r: r["id"])
    ids = [r["id"] for r in rows]
    if len(ids) != len(set(ids)):
        dupes = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise UserError(f"asset ids repeat across manifests in {directory}: {dupes}; give each import its own --prefix")
    return rows


def manifest_digest(rows: list[dict]) -> str:
    """A hash of the asset set: what a run used, recorded in run.json."""
    digest = hashlib.sha256()
    for r in rows:
        digest.update(json.dumps([r["id"], r["sha256"], r["name"], r["extra"]], sort_keys=True).encode())
    return digest.hexdigest()[:16]
