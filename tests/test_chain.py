"""The run log's hash chain: every manifest records the sha256 of the one committed before it; verify names any
manifest changed, removed or inserted, and checks a head kept elsewhere."""

from __future__ import annotations

import json
import threading

import pytest

from archive import chain
from archive.audit import check_chain, commit_audit
from archive.fixity import sha256_hex
from archive.provenance import RunContext, new_run_id
from archive.publish import manifest_key
from archive.storage import LocalStore
from tests import test_damaged
from tests.test_damaged import archive, ingest_runs, replace

any_store = test_damaged.any_store  # (fixtures)
cli_env = test_damaged.cli_env

pytestmark = pytest.mark.flow


def audit_run(store) -> str:
    run = RunContext(new_run_id(), None, store.url)
    commit_audit(store, run, [], {})
    return run.run_id


def links(store) -> list[tuple[str, dict, str]]:
    """(run_id, its chain, its bytes' sha256) of every manifest, in commit order."""
    found = []
    for entry in chain.entries(store, fresh=True):
        found.append((entry.run_id, json.loads(store.get_bytes(entry.key)).get("chain"), entry.sha256))
    return sorted(found, key=lambda row: row[1]["sequence"] if row[1] else 0)


def test_each_manifest_records_the_one_committed_before_it(any_store, seeds_dir, tmp_path):
    runs = ingest_runs(any_store, seeds_dir, tmp_path) + [audit_run(any_store)]
    chained = links(any_store)
    assert [run_id for run_id, _, _ in chained] == runs  # commit order
    assert [link["sequence"] for _, link, _ in chained] == [1, 2, 3]
    assert chained[0][1] == {"sequence": 1, "previous_run_id": None, "previous_sha256": None, "earlier": {}}
    for (before, _, before_sha256), (_, link, _) in zip(chained, chained[1:]):
        assert link["previous_run_id"] == before and link["previous_sha256"] == before_sha256
    assert list(check_chain(any_store))[0].ok


def test_the_first_chained_manifest_lists_every_earlier_one(tmp_path, seeds_dir):
    store = LocalStore(tmp_path / "store")
    first, second = ingest_runs(store, seeds_dir, tmp_path)
    for run_id in (first, second):  # as committed before the chain began
        manifest = json.loads(store.get_bytes(manifest_key(run_id)))
        del manifest["chain"]
        replace(store, None, manifest_key(run_id), json.dumps(manifest).encode())
    chain._seen.clear()
    third = audit_run(store)
    link = json.loads(store.get_bytes(manifest_key(third)))["chain"]
    assert link["sequence"] == 1
    assert link["earlier"] == {run_id: sha256_hex(store.get_bytes(manifest_key(run_id))) for run_id in (first, second)}
    assert [c.ok for c in check_chain(store)] == [True]
    replace(store, None, manifest_key(first), b"{}")  # an earlier one changed: named
    assert [(c.finding.kind, c.key) for c in check_chain(store)] == [("chain-changed", manifest_key(first))]


@pytest.mark.parametrize("how", ["changed", "removed", "inserted", "two-at-one-place"])
def test_verify_names_a_manifest_changed_removed_or_inserted(any_store, seeds_dir, tmp_path, request, how):
    runs = ingest_runs(any_store, seeds_dir, tmp_path) + [audit_run(any_store)]
    middle = manifest_key(runs[1])
    if how == "changed":  # 500 rows fewer, say: the manifest's bytes change
        manifest = json.loads(any_store.get_bytes(middle))
        manifest["counts"]["documents"] -= 1
        replace(any_store, request, middle, json.dumps(manifest, indent=2).encode())
        expected = [("chain-changed", middle)]
    elif how == "removed":
        any_store.delete(middle)
        expected = [("chain-missing", middle)]
    elif how == "inserted":  # a manifest copied in under a new run id, its chain taken away
        manifest = json.loads(any_store.get_bytes(middle))
        manifest["run_id"] = forged = new_run_id()
        del manifest["chain"]
        any_store.put_bytes(manifest_key(forged), json.dumps(manifest).encode())
        expected = [("chain-inserted", manifest_key(forged))]
    else:  # a second manifest claiming the middle's place
        manifest = json.loads(any_store.get_bytes(middle))
        manifest["run_id"] = forged = "29990101T000000Z-beef"
        any_store.put_bytes(manifest_key(forged), json.dumps(manifest).encode())
        expected = [("chain-inserted", manifest_key(forged))]
    found = [(c.finding.kind, c.key) for c in check_chain(any_store) if not c.ok]
    assert found == expected


def test_a_head_kept_elsewhere_must_still_be_in_the_chain(tmp_path, seeds_dir):
    store = LocalStore(tmp_path / "store")
    runs = ingest_runs(store, seeds_dir, tmp_path)
    kept = chain.head(chain.entries(store, fresh=True)).sha256
    audit_run(store)  # the head moves on; the kept one is still in the chain
    assert all(c.ok for c in check_chain(store, kept))
    manifest = json.loads(store.get_bytes(manifest_key(runs[1])))
    manifest["notes"] = ["rewritten"]
    replace(store, None, manifest_key(runs[1]), json.dumps(manifest).encode())
    kinds = {c.finding.kind for c in check_chain(store, kept) if not c.ok}
    assert kinds == {"chain-changed", "chain-head"}


def test_concurrent_commits_make_one_line(tmp_path):
    store = LocalStore(tmp_path / "store")
    errors = []

    def commit_some():
        try:
            for _ in range(4):
                audit_run(store)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=commit_some) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(link["sequence"] for _, link, _ in links(store)) == list(range(1, 13))
    assert [c.ok for c in check_chain(store)] == [True]


def test_runs_prints_the_head_and_verify_checks_it(cli_env, seeds_dir, tmp_path):
    store = LocalStore(tmp_path / "store")
    runs = ingest_runs(store, seeds_dir, tmp_path)
    dest = str(tmp_path / "store")
    listed = archive("runs", "--dest", dest, env=cli_env)
    head = archive("runs", "--dest", dest, "--head", env=cli_env).stdout.strip()
    assert head == sha256_hex(store.get_bytes(manifest_key(runs[-1])))
    assert f"sha256 {head}" in listed.stdout
    verified = archive("verify", "--dest", dest, "--head", head, "--json", env=cli_env)
    assert verified.returncode == 0, verified.stderr
    replace(store, None, manifest_key(runs[0]), store.get_bytes(manifest_key(runs[0])) + b" ")
    verified = archive("verify", "--dest", dest, "--head", head, "--json", env=cli_env)
    assert verified.returncode == 1
    problems = json.loads(verified.stdout)["problems"]
    assert [(p["kind"], p["key"]) for p in problems] == [("chain-changed", manifest_key(runs[0]))]
    assert archive("verify", "--dest", dest, "--head", "abc", env=cli_env).returncode == 2
