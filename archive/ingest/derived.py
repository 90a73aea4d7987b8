"""Objects derived from an original (the ALTO of its OCR), kept as originals are: under their own SHA-256, once."""

from __future__ import annotations

from ..errors import ObjectExistsError, StoreError
from ..fixity import sha256_hex
from ..storage import Store, object_key


def store_derived(store: Store, data: bytes, what: str) -> tuple[str, str]:
    """(the key data is kept under, what happened) for a derived object: write-once, content-addressed, never
    rewritten; the same bytes derived again (a re-run, another copy) find their object already there.
    what names the object in errors ("the ALTO of scan.png")."""
    sha256 = sha256_hex(data)
    key = object_key(sha256)
    stored = store.size(key)
    if stored is None:
        try:
            result = store.put_bytes(key, data, sha256=sha256)
        except ObjectExistsError:
            stored = store.size(key)
        else:
            if result.stored_sha256 is not None and result.stored_sha256 != sha256:
                raise StoreError(key, f"store holds sha256 {result.stored_sha256} for {what}, expected {sha256}")
            return key, f"stored at {key}"
    if stored != len(data):
        raise StoreError(key, f"{what}: the stored object has {stored} bytes, these bytes are {len(data)}: the "
                              "stored copy is damaged (run archive verify)")
    return key, f"already in store at {key}"
