"""A deterministic synthetic corpus of OCR-like English text files, for benchmarks.

    python bench/make_corpus.py OUT --files 100000 [--seed 7]

The same --files and --seed give a byte-identical tree. Files are 2-20 KB
(mean about 13 KB) of English-like prose with the debris of digitisation:
words split across lines by a hyphen ("inde-\\npendence"), real compounds split
the same way ("well-\\nknown"), CRLF line endings in some files, decomposed
accents (NFD) and curly quotes, a few files in Windows-1252 and UTF-16. About
1% are exact duplicates of an earlier file and about 0.5% are bad (empty,
binary, whitespace only). Files sit two folders deep, about 100 to a folder.

Text is built from a pool of pre-wrapped paragraphs (made once per seed from a
fixed word list and sentence templates), so generation streams: one file is in
memory at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time

FILES_PER_FOLDER = 100
FOLDERS_PER_BOX = 32
POOL_PARAGRAPHS = 12000

# Shares of files (the rest are UTF-8 text with LF endings).
P_DUPLICATE = 0.010
P_BAD = 0.005
P_CP1252 = 0.010
P_UTF16 = 0.005
P_CRLF = 0.10

MIN_BYTES, MODE_BYTES, MAX_BYTES = 2_000, 17_000, 20_000  # triangular: mean (2+17+20)/3 = 13 KB

DETERMINERS = "the the the a a this that every each some no another their our its his her".split()
ADJECTIVES = (
    "old new early late small large local national regional public private general special official "
    "important several certain particular recent former following present annual economic political "
    "social historical administrative agricultural industrial municipal parliamentary provincial "
    "well-known long-term so-called full-scale first-hand up-to-date "
    "remarkable considerable unfortunate extraordinary necessary responsible independent preliminary"
).split()
NOUNS = (
    "committee council government minister secretary office department report letter meeting record "
    "village town city county province district harbour railway bridge road school church hospital "
    "market factory company society association union board court parish estate farm mill "
    "year month week season harvest winter summer price wage tax duty rent loan debt account "
    "correspondence administration independence arrangement establishment development improvement "
    "representative constituency manufacturer agriculture population expenditure recommendation "
    "inspector engineer clerk treasurer merchant labourer teacher physician surveyor magistrate"
).split()
PLURALS = (
    "committees councils ministers letters meetings records villages towns roads schools churches "
    "markets factories companies farms mills prices wages taxes accounts improvements representatives "
    "manufacturers inspectors engineers clerks merchants labourers teachers surveyors magistrates"
).split()
VERBS = (
    "approved rejected considered received examined reported recommended established completed "
    "discussed requested announced described confirmed prepared inspected delivered published "
    "administered investigated acknowledged transferred constructed reorganised"
).split()
ADVERBS = "recently formally finally carefully immediately subsequently unanimously reluctantly accordingly".split()
PREPOSITIONS = "of in at on for with from under near during after before against between".split()
PLACES = (
    "Aberdeen Ballarat Cardiff Dunedin Edinburgh Fremantle Galway Hobart Inverness Kilkenny Limerick "
    "Melbourne Napier Oamaru Perth Queenstown Rotorua Sligo Timaru Wexford"
).split()
PEOPLE = "Anderson Brown Campbell Davies Evans Fraser Graham Hughes Irvine Johnston Kelly Murray".split()
TITLES = "Mr. Mrs. Dr. Rev. Capt. Sir".split()
# Non-ASCII words: NFC forms, and the same words decomposed (NFD) as some OCR engines emit them.
ACCENTED = ["café", "naïve", "rôle", "régime", "coöperation", "façade", "première", "élite"]
ACCENTED_NFD = ["cafe\u0301", "nai\u0308ve", "ro\u0302le", "re\u0301gime", "fac\u0327ade"]
SUBJECTS = [
    "Roads and Bridges", "Harbour Works", "Public Health", "Education Board", "Land Valuation",
    "Water Supply", "Railway Extension", "Market Regulations", "Poor Relief", "Fire Brigade",
]


def _noun_phrase(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.12:
        return f"{rng.choice(TITLES)} {rng.choice(PEOPLE)}"
    if r < 0.22:
        return rng.choice(PLACES)
    noun = rng.choice(PLURALS) if rng.random() < 0.3 else rng.choice(NOUNS)
    det = "the" if noun in PLURALS else rng.choice(DETERMINERS)
    if rng.random() < 0.45:
        return f"{det} {rng.choice(ADJECTIVES)} {noun}"
    return f"{det} {noun}"


def _sentence(rng: random.Random) -> str:
    parts = [_noun_phrase(rng)]
    if rng.random() < 0.3:
        parts.append(rng.choice(ADVERBS))
    parts.append(rng.choice(VERBS))
    parts.append(_noun_phrase(rng))
    for _ in range(rng.choice((0, 1, 1, 2, 2, 3))):
        parts.append(rng.choice(PREPOSITIONS))
        parts.append(_noun_phrase(rng))
    if rng.random() < 0.08:
        parts.append(rng.choice(("for the", "at the")))
        parts.append(rng.choice(ACCENTED_NFD if rng.random() < 0.5 else ACCENTED))
    words = " ".join(parts)
    if rng.random() < 0.1:
        words = f"\u201c{words}\u201d"  # curly quotes: UTF-8 multi-byte, cp1252 single-byte
    elif rng.random() < 0.1:
        words = words + " \u2014 " + _noun_phrase(rng)
    end = "." if rng.random() < 0.9 else rng.choice(("?", ";", ":"))
    return words[0].upper() + words[1:] + end


def _wrap(words: list[str], width: int, rng: random.Random) -> str:
    """Lines of about width characters; long words at a line end are split with a hyphen, as OCR'd print is."""
    lines, line = [], ""
    for word in words:
        if not line:
            line = word
        elif len(line) + 1 + len(word) <= width:
            line += " " + word
        else:
            room = width - len(line) - 1
            if "-" in word and word.index("-") + 1 <= room and rng.random() < 0.7:
                cut = word.index("-") + 1  # a real compound broken at its own hyphen: "well-\nknown"
                lines.append(f"{line} {word[:cut]}")
                line = word[cut:]
            elif len(word) >= 7 and word.isalpha() and room >= 4 and rng.random() < 0.6:
                cut = rng.randint(3, min(room - 1, len(word) - 3))
                lines.append(f"{line} {word[:cut]}-")  # "inde-\npendence"
                line = word[cut:]
            else:
                lines.append(line)
                line = word
    if line:
        lines.append(line)
    return "\n".join(lines)


def _paragraph_pool(rng: random.Random, count: int) -> list[str]:
    pool = []
    for _ in range(count):
        sentences = [_sentence(rng) for _ in range(rng.randint(2, 7))]
        text = " ".join(sentences)
        if rng.random() < 0.02:
            text = text.replace(" ", "  ", 3)  # stray double spaces from OCR
        pool.append(_wrap(text.split(" "), rng.randint(58, 80), rng))
    return pool


def _text_file(rng: random.Random, pool: list[str], index: int) -> str:
    target = int(rng.triangular(MIN_BYTES, MAX_BYTES, MODE_BYTES))
    head = []
    if rng.random() < 0.3:
        head.append(f"date {rng.randint(1850, 1990)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}")
    head.append(f"{rng.choice(SUBJECTS)}: {rng.choice(NOUNS)} no. {index}")
    paragraphs = ["\n".join(head)]
    size = len(paragraphs[0])
    while size < target:
        paragraph = rng.choice(pool)
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
    if rng.random() < 0.05:
        paragraphs.insert(rng.randint(1, len(paragraphs) - 1), "\f")  # a page break
    return "\n\n".join(paragraphs) + "\n"


def _bad_file(rng: random.Random) -> bytes:
    kind = rng.randrange(3)
    if kind == 0:
        return b""
    if kind == 1:
        return rng.randbytes(rng.randint(500, 8000))  # binary
    return rng.choice((b" ", b"\n", b"\t", b"\r\n")) * rng.randint(1, 3000)


def _encode(text: str, rng: random.Random) -> tuple[bytes, str]:
    r = rng.random()
    if rng.random() < P_CRLF:
        text = text.replace("\n", "\r\n")
    if r < P_UTF16:
        if rng.random() < 0.5:
            return text.encode("utf-16"), "utf-16"  # with a byte-order mark
        return text.encode("utf-16-le"), "utf-16-le"  # without one
    if r < P_UTF16 + P_CP1252:
        # NFD accents have no cp1252 form: compose them, as a Windows editor would have.
        import unicodedata

        return unicodedata.normalize("NFC", text).encode("cp1252", "replace"), "cp1252"
    return text.encode("utf-8"), "utf-8"


def relative_path(index: int) -> str:
    folder = index // FILES_PER_FOLDER
    return f"box-{folder // FOLDERS_PER_BOX:03d}/folder-{folder % FOLDERS_PER_BOX:02d}/doc-{index:06d}.txt"


def make_corpus(out: str, files: int, seed: int = 7) -> dict:
    """Write the corpus under out (which must not exist or be empty); returns counts."""
    rng = random.Random(seed)
    pool = _paragraph_pool(random.Random(f"pool-{seed}"), POOL_PARAGRAPHS)
    counts = {"files": files, "bytes": 0, "duplicates": 0, "bad": 0,
              "utf-8": 0, "cp1252": 0, "utf-16": 0, "utf-16-le": 0}
    written: list[str] = []  # relative paths of text files, to copy duplicates from
    made_dirs: set[str] = set()
    for index in range(files):
        rel = relative_path(index)
        path = os.path.join(out, rel)
        directory = os.path.dirname(path)
        if directory not in made_dirs:
            os.makedirs(directory, exist_ok=True)
            made_dirs.add(directory)
        r = rng.random()
        if r < P_DUPLICATE and written:
            source = os.path.join(out, written[rng.randrange(len(written))])
            shutil.copyfile(source, path)
            counts["duplicates"] += 1
            counts["bytes"] += os.path.getsize(path)
            continue
        if r < P_DUPLICATE + P_BAD:
            data = _bad_file(rng)
            counts["bad"] += 1
        else:
            data, encoding = _encode(_text_file(rng, pool, index), rng)
            counts[encoding] += 1
            written.append(rel)
        with open(path, "wb") as stream:
            stream.write(data)
        counts["bytes"] += len(data)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", metavar="OUT", help="directory to create (must be absent or empty)")
    parser.add_argument("--files", type=int, default=100_000, help="number of files (default 100000)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    args = parser.parse_args(argv)
    if os.path.exists(args.out) and os.listdir(args.out):
        parser.error(f"{args.out} exists and is not empty")
    started = time.perf_counter()
    counts = make_corpus(args.out, args.files, args.seed)
    counts["seconds"] = round(time.perf_counter() - started, 2)
    counts["seed"] = args.seed
    json.dump(counts, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
