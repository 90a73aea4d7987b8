"""What the `archive` command prints for people: summaries, tables and a progress line (--json is the CLI's own)."""

from __future__ import annotations


def show(text: str) -> str:
    """Text from a file or a person (a path, a title, a detail) as one printable line: control characters (escape
    sequences, newlines...) escaped, so nothing read from a file can move the cursor, recolour or clear a terminal."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class Progress:
    """files done / total and rate, on one line of a terminal's stderr."""

    def __init__(self, stream):
        self.stream = stream
        self.shown = False

    def __call__(self, done: int, total: int | None, elapsed: float) -> None:
        rate = done / elapsed if elapsed > 0 else 0.0
        of = f"/{total:,}" if total else ""
        self.stream.write(f"\r  {done:,}{of} files  {rate:,.0f} files/s  ")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


RATE_MIN_FILES = 1000


def started_by(manifest: dict) -> str:
    """Who or what started a run, in a few words: the deployment, else user@host."""
    who = manifest.get("started_by") or {}
    return who.get("deployment") or f"{who.get('user')}@{who.get('host')}"


def ingest_summary(result: dict, set_aside_before: set[tuple[str, str, str]] = frozenset()) -> None:
    """The run's summary; the files earlier runs set aside the same way (set_aside_before: path, outcome, reason)
    are counted, not listed again."""
    counts = result["counts"]
    print(f"Run {result['run_id']} committed to {result['dest']}")
    print(f"  manifest     {result['manifest']}")
    for name in ("files", "documents", "duplicates", "quarantined", "skipped"):
        print(f"  {name:<12} {counts[name]:>8,}")
    if counts.get("members"):
        print(f"  (of the files, {counts['members']:,} unpacked from ZIP, TAR, mbox or e-mail containers)")
    updated = counts.get("updated", 0)
    if updated:
        print(f"{updated:,} record{'' if updated == 1 else 's'} updated (a new version each: archive lineage PATH "
              "shows what changed)")
    seconds = result["seconds"]
    # A rate says something of a run long enough for start-up to be a small part of it.
    rate = f" ({counts['files'] / seconds:,.0f} files/s)" if counts["files"] >= RATE_MIN_FILES and seconds else ""
    print(f"  {result['bytes']:,} bytes in {seconds:.1f} s{rate}")
    problems = result["problems"]
    new = [p for p in problems if (p["path"], p["outcome"], p["reason"]) not in set_aside_before]
    again = len(problems) - len(new)
    if counts["documents"] == 0 and not updated and not new and counts["files"] == counts["duplicates"] + again:
        print("Nothing new: no document was added, and every file set aside was set aside before.")
    if new:
        print(f"Set aside ({counts['quarantined']} quarantined, {counts['skipped']} skipped)"
              + (", new since the last run:" if again else ":"))
        for p in new:
            print(f"  {show(p['path'])}: {p['outcome']} {p['reason']}: {show(p['detail'])}")
    hidden = counts["quarantined"] + counts["skipped"] - len(problems)
    if hidden > 0:
        print(f"  ... and {hidden:,} more: see the quarantine and files datasets")
    if again:
        print(f"{again:,} file(s) set aside as by an earlier run (not listed again: archive lineage PATH tells why)")
    reuse = result.get("reuse")
    if reuse:
        print(f"Text reuse: {reuse.get('pairs', 0):,} pair(s) of documents share {reuse.get('passages', 0):,} "
              f"passage(s) (new documents against {reuse.get('runs_compared', 0):,} committed run(s); "
              "see archive lineage DOC_ID)")
        if reuse.get("texts_cut"):
            print(f"  {reuse['texts_cut']:,} text(s) longer than max_text_chars (parameters.reuse in the manifest) "
                  "searched in their first part only")
    for note in result.get("notes", []):
        print(f"Note: {show(note)}")


def runs_table(manifests: list[dict], damaged=(), head: dict | None = None) -> None:
    """One line a run, in run order; a run whose manifest is damaged (DamagedManifest) as such; then the head of
    the run log's hash chain."""
    if not manifests and not damaged:
        print("No committed runs.")
        return
    width = max(len("started by"), *(len(started_by(m)) for m in manifests))
    print(f"{'run':<24} {'kind':<7} {'committed':<20} {'started by':<{width}} {'files':>7} {'docs':>7} {'dups':>7} "
          f"{'quar':>6} {'skip':>6}  collection")
    rows = [(m["run_id"], m) for m in manifests] + [(d.run_id, d) for d in damaged]
    for _, m in sorted(rows, key=lambda row: row[0]):
        if not isinstance(m, dict):
            print(f"{show(m.run_id):<24} DAMAGED {show(m.key)}: {show(m.damage)} (left out of every command)")
            continue
        c = m["counts"]
        line = f"{m['run_id']:<24} {m['kind']:<7} {m['committed_at'][:19]:<20} {show(started_by(m)):<{width}}"
        if m["kind"] == "reuse":
            print(f"{line} {c['pairs']:,} document pairs share {c['passages']:,} passages")
        elif m["kind"] == "audit":
            print(f"{line} checked {c['objects']:,} originals, {c['parts']:,} parts: {c['problems']:,} problem(s)")
        elif m["kind"] == "withdrawal":
            print(f"{line} withdrew {c['records']:,} record(s), {c['documents']:,} document(s); purged "
                  f"{c['purged']:,}: {show(m['parameters'].get('reason', ''))}")
        elif m["kind"] == "reprocess":
            print(f"{line} re-derived {c['documents']:,} document(s): {c['changed']:,} new text(s), "
                  f"{c.get('updated', 0):,} record(s) updated")
        else:
            print(f"{line} {c['files']:>7,} {c['documents']:>7,} {c['duplicates']:>7,} {c['quarantined']:>6,} "
                  f"{c['skipped']:>6,}  {show(m['collection'] or '')}")
    if head is not None:
        print(f"Head of the run log's hash chain: {head['key']} (sequence {head['sequence']}), sha256 "
              f"{head['sha256']}. Kept elsewhere, it lets `archive verify --head SHA256` check later that nothing "
              "up to it was changed or removed.")


def verify_report(report: dict) -> None:
    checked = report["checked"]
    for problem in report["problems"]:
        print(show(problem["message"]))
    for purged in report.get("purged", []):
        print(show(purged["message"]))
    verdict = "all hold" if not report["problems"] else f"{len(report['problems'])} problem(s)"
    if report.get("purged"):
        verdict += f" ({len(report['purged']):,} original(s) purged by withdrawal runs, as they record)"
    print(f"Fixity of {report['dest']}: {verdict}. Checked {checked['parts']:,} part file(s) of "
          f"{checked['runs']:,} run(s) and {checked['objects']:,} original(s) in {report['seconds']:.1f} s; "
          f"audit recorded as run {report['run_id']}.")


def lineage_story(story: dict) -> None:
    original = story["original"]
    stored = f"stored, {original['bytes']:,} bytes" if original["stored"] else "MISSING from the store"
    if not original["stored"] and original.get("purged_by"):
        stored = f"purged by withdrawal run {original['purged_by'][0]}: {show(original['purged_by'][1])}"
    print(f"sha256 {story['sha256']}")
    print(f"original  {original['key']} ({stored})")
    print("sources:")
    for src in story["sources"]:
        why = f" ({src['reason']})" if src["reason"] else ""
        print(f"  {show(src['path'])}  run {src['run_id']}: {src['outcome']}{why}  {src['media_type'] or ''} "
              f"{src['puid'] or ''}".rstrip())
    print("published:" if story["documents"] else "published: no document was made from these bytes")
    for d in story["documents"]:
        print(f"  document in run {d['run_id']}, part {d['part']}: {show(d['title']) if d['title'] else '(no title)'}; "
              f"{d['char_count']:,} characters, text sha256 {d['text_sha256']}, by {d['extractor']} "
              f"{d['extractor_version']}")
    if story.get("records"):
        print("records (every version):")
        shown = None
        for r in story["records"]:
            if r["record_id"] != shown:
                print(f"  {show(r['path'])}  record {r['record_id']}")
                shown = r["record_id"]
            what = r["change"] + (f" ({', '.join(r['changed_fields'])})" if r["changed_fields"] else "")
            why = f"; reason: {show(r['reason'])}" if r["reason"] else ""
            print(f"    version {r['version']}  run {r['run_id']}  {what}{why}: "
                  f"{show(r['title']) if r['title'] else '(no title)'}, {r['date_text'] or 'no date'}; "
                  f"doc {r['doc_id']}")
    if story["shares_text_with"]:
        print("shares text with:")
        for other in story["shares_text_with"]:
            print(f"  {other['doc_id']}  similarity {other['similarity']:.3f}, {other['passages']} passage(s), "
                  f"{other['words']} words  (run {other['run_id']})")
    for cluster in story.get("reuse_clusters") or ():
        first = cluster["members"][0]
        earliest = (f"earliest {cluster['earliest_date']} ({cluster['earliest_doc_id']})" if cluster["earliest_doc_id"]
                    else "no member dated")
        print(f"reprint cluster {cluster['cluster_id'][:16]}: {cluster['size']} documents, {earliest}; this "
              f"document's passage at {first['start']}-{first['end']}  (run {cluster['run_id']})")
        for m in cluster["members"][1:]:
            print(f"  {m['doc_id']}  {m['start']}-{m['end']}  {m['date'] or 'no date'}")
    if story["shares_text_with"] and not story.get("reuse_clusters"):
        print("reprint clusters: this document is in none yet; `archive reuse` groups the passages of every "
              "committed document into clusters")
    print("events:")
    for e in story["events"]:
        tool = f" [{e['tool']}]" if e["tool"] else ""
        print(f"  {e['event_time'].isoformat()}  {e['event_type']:<27} {e['outcome']:<8} {e['agent']} "
              f"{e['agent_version']}{tool}  run {e['run_id']}  flow run {e['flow_run_id'] or '-'}")
        where = f"{show(e['source_path'])}: " if e.get("source_path") else ""
        print(f"      {where}{show(e['detail'])}")
    print("runs:")
    for r in story["runs"]:
        print(f"  {r['run_id']}  {r['kind']}  committed {r['committed_at']}  by {show(started_by(r))}  "
              f"with {r['software']}")


def bag_written(result: dict) -> None:
    print(f"Bag of run {result['run_id']} written to {result['bag']}: {result['files']:,} original(s), "
          f"{result['texts']:,} text(s), {result['parts']:,} part file(s), {result['events']:,} event(s) with METS, "
          f"PREMIS and PROV; manifests {' and '.join(result['algorithms'])}.")
    renamed = result.get("renamed") or {}
    if renamed:
        from archive.bag import RENAMED_TAG_FILE

        print(f"{len(renamed):,} path(s) could not be a file of their own in the bag and are under other names "
              f"(listed in {RENAMED_TAG_FILE}):")
        for path, name in sorted(renamed.items()):
            print(f"  {show(path)} -> data/objects/{show(name)}")


def export_written(result: dict) -> None:
    if result["format"] == "ocfl":
        print(f"OCFL storage root {show(result['out'])}: {result['objects']:,} object(s) of run(s) "
              f"{', '.join(result['runs'])}: {result['created']:,} created, {result['updated']:,} given new versions, "
              f"{result['unchanged']:,} already up to date; {result['versions_added']:,} version(s) added.")
    elif result["format"] == "mets":
        print(f"METS of run {result['run_id']} written to {show(result['out'])}: {result['files']:,} file(s), "
              f"{result['objects']:,} PREMIS object(s), {result['events']:,} event(s).")
    else:
        print(f"PREMIS of run {result['run_id']} written to {show(result['out'])}: {result['objects']:,} object(s), "
              f"{result['events']:,} event(s), {result['agents']:,} agent(s).")


def reuse_committed(result: dict) -> None:
    c = result["counts"]
    print(f"Reuse run {result['run_id']} committed: {c['pairs']:,} pair(s) of documents share {c['passages']:,} "
          f"passage(s) among {c['documents']:,} documents ({c['candidate_pairs']:,} candidate pairs compared; band "
          f"hashes computed for {c['documents_sketched']:,} documents that had none).")


def gc_totals(gone) -> dict:
    return {"parts": sum(c.kind == "part" for c in gone), "objects": sum(c.kind == "object" for c in gone),
            "other": sum(c.kind == "other" for c in gone), "bytes": sum(c.bytes for c in gone)}


def gc_json(plan, result, delete: bool) -> dict:
    gone = list(result.removed) if result else list(plan.candidates)
    return {
        "dest": plan.dest, "dry_run": not delete, "older_than_seconds": plan.older_than,
        "committed_runs": len(plan.runs),
        "candidates": [{"key": c.key, "kind": c.kind, "bytes": c.bytes, "age_seconds": round(c.age, 1)}
                       for c in plan.candidates],
        "removed": [c.key for c in result.removed] if result else [],
        "totals": gc_totals(gone),
        "kept": {"too_recent": len(plan.too_recent), "too_recent_bytes": sum(c.bytes for c in plan.too_recent),
                 "referenced": plan.referenced, "of_damaged_runs": plan.of_damaged,
                 "referenced_meanwhile": [c.key for c in result.referenced_meanwhile] if result else [],
                 "foreign": list(plan.foreign)},
        "already_gone": [c.key for c in result.already_gone] if result else [],
    }


def gc_report(plan, result) -> None:
    gone = list(result.removed) if result else list(plan.candidates)
    totals = gc_totals(gone)
    for c in gone:
        print(f"{'removed' if result else 'would remove'}  {c.kind:<6} {c.bytes:>13,} bytes  {age(c.age):>6} old  "
              f"{show(c.key)}")
    kept = [f"{len(plan.too_recent):,} too recent (younger than {age(plan.older_than)})",
            f"{plan.referenced:,} referenced by {len(plan.runs):,} committed run(s)"]
    if result and result.referenced_meanwhile:
        kept.append(f"{len(result.referenced_meanwhile):,} referenced by a run committed meanwhile")
    if plan.foreign:
        kept.append(f"{len(plan.foreign):,} not written by archive (left alone)")
    if plan.damaged:
        kept.append(f"{plan.of_damaged:,} of run(s) whose manifest is damaged")
    what = (f"{totals['parts']:,} part(s), {totals['objects']:,} object(s), {totals['other']:,} other: "
            f"{totals['bytes']:,} bytes")
    if result:
        print(f"Removed {what} from {plan.dest}. Kept: {', '.join(kept)}.")
        if result.already_gone:
            print(f"  {len(result.already_gone):,} were already gone (removed by someone else meanwhile).")
    else:
        print(f"Would remove {what} from {plan.dest}. Kept: {', '.join(kept)}.")
        if plan.damaged:
            runs = ", ".join(d.run_id for d in plan.damaged)
            print(f"Dry run: nothing was removed. --delete removes nothing while a manifest is damaged (run {runs}): "
                  "what that run references is unknown, and the originals listed may be among them. Restore the "
                  "manifest first.")
        else:
            print("Dry run: nothing was removed; --delete removes them.")


def service_status(state: dict) -> None:
    srv, worker = state["server"], state["worker"]
    if not srv["up"]:
        print("The local Prefect server is not running (archive service start, or any archive ingest, starts it).")
        return
    when = ("stops after the idle time without a command" if srv["stops_when_idle"]
            else "runs until archive service stop")
    print(f"Prefect server  {srv['ui_url']}  (pid {srv['pid']}; {when})")
    print(f"Worker          {'pid ' + str(worker['pid']) + ' polling ' + worker['pool'] if worker['up'] else 'none'}")


def age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h" + (f"{seconds % 3600 // 60:02d}m" if seconds % 3600 >= 60 else "")
    return f"{seconds // 86400}d" + (f"{seconds % 86400 // 3600:02d}h" if seconds % 86400 >= 3600 else "")
