"""Text fidelity of web pages and PDFs: the archive's extraction against the bare library it wraps, on public test
sets with their ground truths, measured in the same command.

    git clone https://github.com/scrapinghub/article-extraction-benchmark /tmp/aeb        # at 4a3bc97
    git clone https://github.com/pdfminer/pdfminer.six /tmp/pdfminer
    git -C /tmp/pdfminer archive a238a199 samples | tar -x -C /tmp/pdfminer-samples      # (the last with its .txt.ref)
    .venv/bin/python bench/text_bench.py --html-set /tmp/aeb --pdf-set /tmp/pdfminer-samples/samples \
        --json-out bench/runs/text.json

The sets are not copied into this repository (web pages of many publishers; pdfminer.six's samples):

  html   Zyte's (Scrapinghub's) article extraction benchmark: 181 news and blog pages (html/*.html.gz), the article
         body of each written by a person (ground-truth.json, articleBody). Bare: trafilatura.extract(page,
         include_comments=False), as the benchmark's own runner calls it, on the page decoded as UTF-8. Archive:
         archive.extract.extract on the page's bytes (its charset found by the archive) then normalise_text, as an
         ingest makes the document's text.
  pdf    pdfminer.six's samples that have a reference text (`*.txt.ref`, what its tests expected pdfminer to give,
         checked by its maintainers): the simple examples of the PDF specification, a LaTeX document (jo), a paper,
         slides, IRS forms, a Japanese text. The references hold each file's first page (`pdf2txt.py -p1 -V`), so
         the first page is compared. Bare: pypdf's PdfReader, the first page's extract_text(). Archive:
         archive.extract.extract, its first page (pages are apart by form feeds), then normalise_text (pypdf, with
         its form limit lifted, text drawn twice at one place read once, a page without a text layer OCR'd).

The score is the article extraction benchmark's: the text and the truth as runs of word characters (\\w+), their
4-word shingles counted; per document, true positives, false positives and false negatives over the shingles,
normalised to sum to 1; precision and recall the means over documents, F1 from those means. The truth and both
texts are normalised alike first (archive.normalise.normalise_text: a word broken by a line-end hyphen joined...),
so a reference that keeps `Ex-` / `isting` does not count the archive's `Existing` as a miss.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import platform
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from gitrev import code_version  # noqa: E402 (bench/, beside this script)

_WORD = re.compile(r"\w+")
SHINGLE = 4


def shingles(text: str) -> Counter:
    words = _WORD.findall(text or "")
    return Counter(tuple(words[i:i + SHINGLE]) for i in range(max(1, len(words) - SHINGLE + 1)) if words[i:i + 1])


def counts(text: str, truth: str) -> tuple[float, float, float]:
    """(true positives, false positives, false negatives) over the shingles, normalised to sum to 1; text and truth
    both normalised first (normalise_text: line-break hyphens joined...), so what differs is the extraction."""
    from archive.normalise import normalise_text

    got, want = shingles(normalise_text(text)), shingles(normalise_text(truth))
    tp = sum((got & want).values())
    fp, fn = sum((got - want).values()), sum((want - got).values())
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total else (0.0, 0.0, 0.0)


def score(rows: list[tuple[float, float, float]]) -> dict[str, float]:
    def ratio(a: float, b: float, c: float) -> float:
        return 1.0 if b == c == 0 else 0.0 if a == b == 0 else a / (a + b)

    precision = statistics.mean(ratio(tp, fp, fn) for tp, fp, fn in rows if tp + fp > 0)
    recall = statistics.mean(ratio(tp, fn, fp) for tp, fp, fn in rows if tp + fn > 0)
    return {"f1": round(2 * precision * recall / (precision + recall), 4), "precision": round(precision, 4),
            "recall": round(recall, 4)}


def archive_text(data: bytes, first_page: bool = False) -> str:
    from archive.extract import ExtractionError, extract
    from archive.identify import identify
    from archive.normalise import normalise_text

    try:
        text = extract(data, identify(data)).text
    except ExtractionError:  # (no-text, corrupt...: nothing published, an empty text here)
        return ""
    return normalise_text(text.split("\f", 1)[0] if first_page else text)  # (pages are apart by form feeds)


def bare_html(data: bytes) -> str:
    import trafilatura

    return trafilatura.extract(data.decode("utf-8", "replace"), include_comments=False) or ""


def bare_pdf(data: bytes) -> str:
    """The first page's text, as the reference has it (pdf2txt -p1)."""
    import pypdf

    try:
        return pypdf.PdfReader(io.BytesIO(data)).pages[0].extract_text()
    except Exception as exc:  # noqa: BLE001 - a bare library's failure is an empty text, counted as such
        print(f"  bare pypdf failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ""


def html_set(root: Path):
    truth = json.loads((root / "ground-truth.json").read_text(encoding="utf-8"))
    for path in sorted((root / "html").glob("*.html.gz")):
        key = path.name.split(".")[0]
        yield key[:12], gzip.decompress(path.read_bytes()), truth[key]["articleBody"]


def pdf_set(root: Path):
    for ref in sorted(root.rglob("*.txt.ref")):
        pdf = ref.with_name(ref.name.removesuffix(".txt.ref") + ".pdf")
        if pdf.exists():
            yield str(pdf.relative_to(root)), pdf.read_bytes(), ref.read_text(encoding="utf-8", errors="replace")


def measure(kind: str, items, bare) -> dict:
    rows, seconds = [], {"bare": 0.0, "archive": 0.0}
    for name, data, truth in items:
        started = time.monotonic()
        theirs = bare(data)
        seconds["bare"] += time.monotonic() - started
        started = time.monotonic()
        ours = archive_text(data, first_page=kind == "pdf")
        seconds["archive"] += time.monotonic() - started
        row = {"file": name, "bare": counts(theirs, truth), "archive": counts(ours, truth)}
        rows.append(row)
        if kind == "pdf":
            print(f"{kind} {name:36} bare tp {row['bare'][0]:.3f}  archive tp {row['archive'][0]:.3f}", flush=True)
    result = {"documents": len(rows), "bare": score([r["bare"] for r in rows]),
              "archive": score([r["archive"] for r in rows]),
              "seconds": {k: round(v, 1) for k, v in seconds.items()},
              "archive_better": sum(r["archive"][0] > r["bare"][0] + 1e-9 for r in rows),
              "bare_better": sum(r["bare"][0] > r["archive"][0] + 1e-9 for r in rows),
              "rows": [{"file": r["file"], "bare_tp": round(r["bare"][0], 4), "archive_tp": round(r["archive"][0], 4)}
                       for r in rows]}
    print(f"{kind}: {result['documents']} documents; bare F1 {result['bare']['f1']} (P {result['bare']['precision']}, "
          f"R {result['bare']['recall']}), archive F1 {result['archive']['f1']} (P {result['archive']['precision']}, "
          f"R {result['archive']['recall']}); archive better on {result['archive_better']}, bare on "
          f"{result['bare_better']}; seconds bare {result['seconds']['bare']}, archive {result['seconds']['archive']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html-set", type=Path, help="a checkout of scrapinghub/article-extraction-benchmark")
    parser.add_argument("--pdf-set", type=Path, help="pdfminer.six's samples/ folder with its *.txt.ref files")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    if not args.html_set and not args.pdf_set:
        parser.error("give --html-set, --pdf-set or both")
    import pypdf
    import trafilatura

    result = {"date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} cores, {platform.system()}",
              "python": platform.python_version(), "trafilatura": trafilatura.__version__,
              "pypdf": pypdf.__version__, "code": code_version(REPO)}
    if args.html_set:
        result["html"] = measure("html", html_set(args.html_set), bare_html)
    if args.pdf_set:
        result["pdf"] = measure("pdf", pdf_set(args.pdf_set), bare_pdf)
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")



if __name__ == "__main__":
    main()
