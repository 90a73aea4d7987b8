"""Reprints in newspapers: how well and how fast the default ingest finds the wire stories papers reprinted.

    .venv/bin/python bench/reprints.py --files 10000 [--seed 31] [--skip no-reuse] [--json-out FILE]

It writes a corpus of --files newspaper-like text files (and a metadata.csv
dating each one), of which about 45% are reprints of wire stories (one story
per 36 files, about 280 at 10,000; each reprinted 2-120 times, log-uniformly,
cut short to 60-100% of its words, with a local paragraph of 40-150 words added
before or after it, and light OCR noise: about 3% of words with a character
misread, 0.5% split in two, 0.5% dropped, 0.5% run into the next). The other
files are local news of their own, 300-1,500 words drawn from a Zipf
vocabulary of 30,000 made-up words, as the stories are. Two reprints of the
same story are a true pair; no other pair shares 10 words in a row except by
chance.

Then, each in its own process and into a store of its own, with Prefect's
temporary server: `archive ingest CORPUS --no-reuse` and `archive ingest
CORPUS` (the default, reuse on). Reported: wall seconds, peak RSS of the
command's process (ru_maxrss, which covers its reaped workers too), the
highest sampled RSS of the process tree, and the four largest processes by
their own sampled peak (the flow, the worker processes, Prefect's server); the reuse step's figures; and,
against the truth the generator wrote (truth.json: the files of each story):
the share of true pairs found, the share of reported pairs that are true, and
passages per true pair found. With --clusters, `archive reuse` then runs on
the default ingest's store, and its clusters (reuse_clusters) are scored: how
many hold exactly the reprints of one story.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import shutil
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from run import _archive_cmd, _children_of, _last_json, _rss_kib, _status_kib, run_child  # noqa: E402

REPRINT_SHARE = 0.45
FILES_PER_STORY = 36
CONFUSIONS = {"e": "c", "c": "e", "l": "1", "i": "l", "o": "0", "n": "u", "u": "n", "m": "rn", "h": "b",
              "a": "o", "s": "5", "t": "f", "r": "n", "d": "cl"}


class Words:
    """Made-up words with Zipf frequencies: text that shares ten words in a row with another only by copying."""

    def __init__(self, rng: random.Random, size: int = 30_000):
        letters = "etaoinshrdlcumwfgypbvk"
        self.vocabulary = sorted({"".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(size)})
        rng.shuffle(self.vocabulary)
        self.cumulative = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(self.vocabulary))))

    def draw(self, rng: random.Random, count: int) -> list[str]:
        words = rng.choices(self.vocabulary, cum_weights=self.cumulative, k=count)
        for at in range(0, count, rng.randint(12, 25)):  # sentences
            words[at] = words[at].capitalize()
            if at:
                words[at - 1] += "."
        return words


def ocr_noise(words: list[str], rng: random.Random) -> list[str]:
    out: list[str] = []
    for word in words:
        roll = rng.random()
        if roll < 0.005:
            continue  # dropped
        if roll < 0.035:
            at = rng.randrange(len(word))
            word = word[:at] + CONFUSIONS.get(word[at], "i") + word[at + 1:]
        elif roll < 0.040 and len(word) > 3:
            at = rng.randrange(1, len(word) - 1)
            out.extend([word[:at], word[at:]])
            continue
        elif roll < 0.045 and out:
            out[-1] += word
            continue
        out.append(word)
    return out


def layout(words: list[str], rng: random.Random) -> str:
    """Words as a newspaper column: lines of 6-9 words, paragraphs of 6-14 lines."""
    lines, at = [], 0
    while at < len(words):
        step = rng.randint(6, 9)
        lines.append(" ".join(words[at:at + step]))
        at += step
        if rng.random() < 0.1:
            lines.append("")
    return "\n".join(lines) + "\n"


def make_corpus(root: Path, files: int, seed: int) -> dict:
    """The corpus under root/corpus and its truth: {story number: [file names]}."""
    rng = random.Random(seed)
    vocabulary = Words(rng)
    corpus = root / "corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    corpus.mkdir(parents=True)
    stories = [vocabulary.draw(rng, rng.randint(400, 1200)) for _ in range(max(1, files // FILES_PER_STORY))]
    counts = [int(math.exp(rng.uniform(math.log(2), math.log(121)))) for _ in stories]
    wanted = int(files * REPRINT_SHARE)
    scale = wanted / sum(counts)
    counts = [max(2, min(120, round(c * scale))) for c in counts]
    slots = [story for story, count in enumerate(counts) for _ in range(count)][:wanted]
    slots += [None] * (files - len(slots))
    rng.shuffle(slots)
    truth: dict[int, list[str]] = {}
    rows = ["filename,dc.date"]
    for number, story in enumerate(slots):
        name = f"{number // 100:03d}/{number:06d}.txt"
        if story is None:
            words = vocabulary.draw(rng, rng.randint(300, 1500))
        else:
            source = stories[story]
            kept = source[:max(1, int(len(source) * rng.uniform(0.6, 1.0)))]
            local = vocabulary.draw(rng, rng.randint(40, 150))
            words = ocr_noise(local + kept if rng.random() < 0.5 else kept + local, rng)
            truth.setdefault(story, []).append(name)
        path = corpus / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(layout(words, rng), encoding="utf-8")
        day = rng.randrange(365 * 3)
        rows.append(f"{name},{1890 + day // 365}-{1 + day % 365 // 31:02d}-{1 + day % 31 % 28:02d}")
    (corpus / "metadata.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    pairs = sum(len(names) * (len(names) - 1) // 2 for names in truth.values())
    info = {"files": files, "stories": len(truth), "reprints": sum(map(len, truth.values())), "true_pairs": pairs}
    (root / "truth.json").write_text(json.dumps({"info": info, "stories": truth}))
    return info


def score(dest: Path, truth_path: Path) -> dict:
    """Recall, precision and passages per true pair of the reuse rows in the store at dest."""
    from archive.publish import committed_manifests
    from archive.read import open_dataset
    from archive.storage import open_store

    figures = [m.get("reuse") for m in committed_manifests(open_store(str(dest))) if m["kind"] == "ingest"]
    truth = json.loads(truth_path.read_text())["stories"]
    documents = open_dataset(str(dest), "documents").to_table(columns=["doc_id", "source_path"])
    by_path = dict(zip(documents.column("source_path").to_pylist(), documents.column("doc_id").to_pylist()))
    story_of = {by_path[name]: story for story, names in truth.items() for name in names if name in by_path}
    reuse = open_dataset(str(dest), "reuse").to_table(columns=["doc_id_a", "doc_id_b"])
    passages: dict[tuple[str, str], int] = {}
    for a, b in zip(reuse.column("doc_id_a").to_pylist(), reuse.column("doc_id_b").to_pylist()):
        passages[(a, b)] = passages.get((a, b), 0) + 1
    true_pairs = sum(len(names) * (len(names) - 1) // 2 for names in truth.values())
    found = {pair: n for pair, n in passages.items() if story_of.get(pair[0], -1) == story_of.get(pair[1], -2)}
    return {
        "true_pairs": true_pairs, "reported_pairs": len(passages), "true_found": len(found),
        "recall": round(len(found) / true_pairs, 4) if true_pairs else None,
        "precision": round(len(found) / len(passages), 4) if passages else None,
        "passages_per_true_pair": round(sum(found.values()) / len(found), 2) if found else None,
        "passages": sum(passages.values()), "manifest_reuse": figures[0] if figures else None,
    }


class ProcessPeaks(threading.Thread):
    """The peak RSS of each process under this one (its VmHWM, the kernel's record of it, read every 0.2 s, so
    that a peak between two readings counts), by what it is."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peaks: dict[int, int] = {}
        self.roles: dict[int, str] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            tree, todo = _children_of(), list(_children_of().get(os.getpid(), ()))
            while todo:
                pid = todo.pop()
                todo.extend(tree.get(pid, ()))
                if pid not in self.roles or "bench/" in self.roles[pid]:  # (a child not yet exec'd)
                    self.roles[pid] = _role(pid)
                if "bench/" not in self.roles[pid]:  # (not the memory of the process it was forked from)
                    self.peaks[pid] = max(self.peaks.get(pid, 0), _rss_kib(pid), _status_kib(pid, b"VmHWM:"))
            self._halt.wait(0.2)

    def stop(self) -> list[dict]:
        self._halt.set()
        self.join()
        found = sorted(self.peaks.items(), key=lambda item: -item[1])
        return [{"process": self.roles.get(pid, "?"), "peak_rss_mib": round(kib / 1024)} for pid, kib in found[:4]]


def _role(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"
    if "multiprocessing" in cmdline and "spawn_main" in cmdline:
        return "worker (spawn)"
    if "multiprocessing" in cmdline:
        return "multiprocessing: " + cmdline[-40:]
    if "ingest" in cmdline and "--dest" in cmdline:
        return "archive ingest (flow)"
    return cmdline[:60]


def score_clusters(dest: Path, truth_path: Path) -> dict:
    """The latest `archive reuse` run's clusters against the stories: how many are exactly one story's reprints."""
    from archive.read import open_dataset
    from archive.reuse import latest_reuse_run
    from archive.storage import open_store

    store = open_store(str(dest))
    truth = json.loads(truth_path.read_text())["stories"]
    documents = open_dataset(store, "documents").to_table(columns=["doc_id", "source_path"])
    story_of = {}
    for doc_id, path in zip(documents.column("doc_id").to_pylist(), documents.column("source_path").to_pylist()):
        story_of[doc_id] = next((story for story, names in truth.items() if path in names), None)
    members: dict[str, set] = {}
    for row in open_dataset(store, "reuse_clusters", runs=[latest_reuse_run(store)]).to_table(
            columns=["cluster_id", "doc_id"]).to_pylist():
        members.setdefault(row["cluster_id"], set()).add(row["doc_id"])
    sizes = {story: len(names) for story, names in truth.items()}
    exact = sum(1 for docs in members.values() if len({story_of.get(d) for d in docs}) == 1
                and len(docs) == sizes.get(story_of.get(next(iter(docs))), -1))
    return {"stories": len(truth), "clusters": len(members), "clusters_exactly_a_story": exact}


def ingest(root: Path, name: str, extra: list[str]) -> dict:
    dest = root / f"store-{name}"
    shutil.rmtree(dest, ignore_errors=True)
    cmd = _archive_cmd() + ["ingest", str(root / "corpus"), "--dest", str(dest), "--json", *extra]
    peaks = ProcessPeaks()
    peaks.start()
    try:
        r = run_child(name, cmd, root)
    finally:
        processes = peaks.stop()
    if r["rc"] != 0:
        raise SystemExit(f"{name} failed ({r['rc']}):\n{r['stderr'][-3000:]}")
    out = _last_json(r["stdout"]) or {}
    return {"wall_s": round(r["wall"], 1), "cpu_s": round(r["cpu_s"], 1), "peak_rss_mib": round(r["peak_rss_mib"]),
            "tree_rss_mib": round(r["tree_rss_mib"]), "processes": processes, "stage_seconds": out.get("stage_seconds"),
            "reuse": out.get("reuse"), "dest": str(dest)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--dir", help="working directory (default: a temporary one, removed unless --keep)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--skip", nargs="*", default=[], choices=["no-reuse", "reuse"])
    parser.add_argument("--clusters", action="store_true",
                        help="then run `archive reuse` on the default ingest's store and score its reprint clusters")
    parser.add_argument("--json-out", metavar="FILE")
    args = parser.parse_args(argv)
    root = Path(args.dir or tempfile.mkdtemp(prefix="archive-reprints-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        result = {"corpus": make_corpus(root, args.files, args.seed)}
        print(json.dumps(result["corpus"]), flush=True)
        if "no-reuse" not in args.skip:
            result["no-reuse"] = ingest(root, "no-reuse", ["--no-reuse"])
            print("no-reuse", json.dumps(result["no-reuse"]), flush=True)
        if "reuse" not in args.skip:
            result["reuse"] = ingest(root, "reuse", [])
            result["reuse"]["score"] = score(Path(result["reuse"]["dest"]), root / "truth.json")
            print("reuse", json.dumps(result["reuse"]), flush=True)
        if args.clusters and "reuse" in result:
            cmd = _archive_cmd() + ["reuse", "--dest", result["reuse"]["dest"], "--json"]
            r = run_child("archive-reuse", cmd, root)
            if r["rc"] != 0:
                raise SystemExit(f"archive reuse failed ({r['rc']}):\n{r['stderr'][-3000:]}")
            result["archive-reuse"] = {"wall_s": round(r["wall"], 1), "peak_rss_mib": round(r["peak_rss_mib"]),
                                       **score_clusters(Path(result["reuse"]["dest"]), root / "truth.json")}
            print("archive reuse", json.dumps(result["archive-reuse"]), flush=True)
        if "no-reuse" in result and "reuse" in result:
            result["ratio"] = round(result["reuse"]["wall_s"] / result["no-reuse"]["wall_s"], 2)
            print("default / --no-reuse:", result["ratio"], flush=True)
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
