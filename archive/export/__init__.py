"""Exports for auditors and other repositories: PREMIS 3.0 XML and METS of a run (premis.py, mets.py), and an OCFL 1.1
storage root of the originals, their texts and metadata, one object per original, versioned by run (ocfl.py)."""
