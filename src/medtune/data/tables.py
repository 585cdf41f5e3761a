"""Columnar sources: Parquet, Arrow files and local Hugging Face ``datasets`` folders, read batch by batch.

Rows are addressed ``file:row N`` (0-based, as ``dataset[N]`` and pandas count them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from medtune.data.readers import ReadOptions, Row, check_columns
from medtune.data.schema import DataError

BATCH_ROWS = 4096


def _rows_from_batches(batches: Iterable[list[dict[str, Any]]], label: str, stem: str) -> Iterator[Row]:
    i = 0
    for batch in batches:
        for obj in batch:
            yield Row(f"{label}:row {i}", f"{stem}-{i}", obj)
            i += 1
    if i == 0:
        raise DataError(f"{label}: has no rows", where=label)


def _iter_parquet(path: Path, opts: ReadOptions) -> Iterator[Row | DataError]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})", where=str(path)) from None
    check_columns(list(pf.schema_arrow.names), opts, str(path))
    batches = (b.to_pylist() for b in pf.iter_batches(batch_size=BATCH_ROWS))
    yield from _rows_from_batches(batches, str(path), path.stem)


def _iter_arrow(path: Path, opts: ReadOptions) -> Iterator[Row | DataError]:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    source = pa.memory_map(str(path))
    try:
        reader: Any = ipc.open_file(source)
        batches: Iterable[Any] = (reader.get_batch(i) for i in range(reader.num_record_batches))
    except pa.ArrowInvalid:
        try:
            reader = ipc.open_stream(source)  # what `datasets` writes
        except pa.ArrowInvalid as exc:
            raise DataError(f"{path}: not a readable Arrow file ({exc})", where=str(path)) from None
        batches = reader
    check_columns(list(reader.schema.names), opts, str(path))
    yield from _rows_from_batches((b.to_pylist() for b in batches), str(path), path.stem)


def _iter_hf(path: Path, opts: ReadOptions) -> Iterator[Row | DataError]:
    from datasets import Dataset, DatasetDict, load_from_disk

    try:
        loaded = load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise DataError(f"{path}: not a readable datasets folder ({exc})", where=str(path)) from None
    if isinstance(loaded, DatasetDict):
        splits = [(f"{path}/{name}", loaded[name]) for name in sorted(loaded)]
    else:
        splits = [(str(path), loaded)]
    for label, ds in splits:
        assert isinstance(ds, Dataset)
        check_columns(list(ds.column_names), opts, label)
        # Arrow tables are memory-mapped; only one batch at a time becomes Python objects.
        batches = (
            [dict(zip(batch, values)) for values in zip(*batch.values())]
            for batch in ds.iter(batch_size=BATCH_ROWS)
        )
        yield from _rows_from_batches(batches, label, Path(label).name)


def iter_table_rows(path: Path, kind: str, opts: ReadOptions) -> Iterator[Row | DataError]:
    if kind == "parquet":
        yield from _iter_parquet(path, opts)
    elif kind == "arrow":
        yield from _iter_arrow(path, opts)
    elif kind == "hf_datasets":
        yield from _iter_hf(path, opts)
    else:
        raise DataError(f"{path}: unsupported source kind {kind!r}")
