"""The damaged manifests an `archive` command came across, each said once: on stderr, or in its --json output.

The library leaves a run whose manifest is damaged out of every read and says so: in what it returns (verify's
problems, gc's plan, lineage's story, an ingest's commit) or, where it returns only data (open_dataset), with a
DamagedManifestWarning. The command collects both, the warnings from every thread of its process.
"""

from __future__ import annotations

import sys
import threading
import warnings

from .output import show


class Damage:
    def __init__(self):
        self.found: dict[str, object] = {}  # manifest key -> DamagedManifest
        self.told: set[str] = set()
        self.in_json = False  # the command's --json output carries them
        self._lock = threading.Lock()
        self._watching = False

    def watch(self) -> None:
        """Collect the DamagedManifestWarnings of this process from now on instead of printing them."""
        from archive.publish import DamagedManifestWarning

        if self._watching:
            return
        self._watching = True
        warnings.simplefilter("always", DamagedManifestWarning)  # each one reaches the hook, never an exception
        previous = warnings.showwarning

        def hook(message, category, filename, lineno, file=None, line=None):
            if isinstance(message, DamagedManifestWarning):
                self.add([message.damaged])
            else:
                previous(message, category, filename, lineno, file, line)

        warnings.showwarning = hook

    def add(self, damaged) -> None:
        """DamagedManifests, or their JSON form ({run_id, key, damage})."""
        from archive.publish import DamagedManifest

        with self._lock:
            for d in damaged:
                if isinstance(d, dict):
                    d = DamagedManifest(d["run_id"], d["key"], d["damage"])
                self.found.setdefault(d.key, d)

    def said(self, damaged) -> None:
        """The command's own output named these: not to be said again."""
        self.add(damaged)
        self.told.update(d["key"] if isinstance(d, dict) else d.key for d in damaged)

    def json(self) -> list[dict]:
        """Every damaged manifest met, as the command's --json output carries them (then not said on stderr)."""
        self.in_json = True
        return [{"run_id": d.run_id, "key": d.key, "damage": d.damage} for _, d in sorted(self.found.items())]

    def tell(self) -> None:
        """One line on stderr for each damaged manifest not yet said (in the output, or in --json)."""
        if self.in_json:
            return
        for key, d in sorted(self.found.items()):
            if key not in self.told:
                self.told.add(key)
                print(f"archive: {show(str(d))}", file=sys.stderr)


damage = Damage()
