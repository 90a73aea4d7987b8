"""What the Iceberg tests share: the documents table read three ways, checked against open_dataset."""

from __future__ import annotations


def assert_tables_match(dest) -> list[str]:
    """The doc_ids of the documents Iceberg table, scanned by pyiceberg and by Polars, equal open_dataset's (the
    current view: no withdrawal or re-derivation has run); returns them."""
    import polars as pl

    from archive.read import iceberg_table, open_dataset

    table = iceberg_table(dest, "documents")
    scanned = sorted(table.scan(selected_fields=("doc_id",)).to_arrow().column("doc_id").to_pylist())
    with_polars = sorted(pl.scan_iceberg(table).select("doc_id").collect()["doc_id"].to_list())
    expected = sorted(open_dataset(dest, "documents").to_table(columns=["doc_id"]).column("doc_id").to_pylist())
    assert scanned == with_polars == expected
    return scanned
