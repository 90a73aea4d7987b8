# The two commands a fresh machine needs: `make demo` and `make test`.
# Both install everything first (a virtualenv in .venv, pinned by constraints.txt).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
RUN_STAMP := $(VENV)/.installed
DEST   ?= ./archive-store

# OCR (Tesseract, its English and orientation-detection data) and PDF rendering come from Debian's packages
# (installed when missing; needs root or sudo).
SYSTEM_PACKAGES := tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd poppler-utils fonts-dejavu-core
# The browser test of the Prefect UI needs a headless Chromium (Debian's package).
TEST_PACKAGES   := chromium

# $(call apt_install,PACKAGES,WHAT-IS-LOST-WITHOUT-THEM)
define apt_install
	if [ "$$(id -u)" = 0 ]; then \
	  echo "Installing $(1)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(1) >/dev/null; \
	elif command -v sudo >/dev/null; then \
	  echo "Installing $(1)"; \
	  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(1) >/dev/null; \
	else \
	  echo "warning: cannot install $(1) (not root, no sudo): $(2)"; \
	fi
endef

.PHONY: install system-deps test-system-deps demo test bench bench-quick bench-command stress clean

install: system-deps $(RUN_STAMP)

system-deps:
	@if command -v tesseract >/dev/null && command -v pdftoppm >/dev/null \
	    && tesseract --list-langs 2>/dev/null | grep -qx osd \
	    && [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then :; \
	else $(call apt_install,$(SYSTEM_PACKAGES),page scans will be quarantined as needs-ocr); fi

test-system-deps:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	else $(call apt_install,$(TEST_PACKAGES),the browser test of the Prefect UI is skipped); fi

# What the archive needs to run (make demo, make install), with pip's progress shown; the test and benchmark
# tools (the dev extra) only for make test and make bench.
$(RUN_STAMP): pyproject.toml constraints.txt
	@echo "Installing the archive and its pinned dependencies into $(VENV) (the first time takes a few minutes)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --progress-bar on -c constraints.txt -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	@echo "Installing the test and benchmark tools into $(VENV)"
	$(PY) -m pip install --progress-bar on -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Ingest the sample corpus into ./archive-store on the local store (no server needed),
# then list the committed runs. Run it twice: the second run adds no documents.
demo: system-deps $(RUN_STAMP)
	$(VENV)/bin/archive ingest examples --dest $(DEST) --collection examples
	$(VENV)/bin/archive runs --dest $(DEST)

test: system-deps test-system-deps $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n auto

# Longer than a test run should be: kill -9 at 20 seeded points of an ingest (make test tries 4),
# and a 2 GiB sparse file.
stress: system-deps $(STAMP)
	ARCHIVE_STRESS=1 ARCHIVE_CRASH_POINTS=20 $(PY) -m pytest tests/test_crash.py tests/test_large_file.py -q -s -p no:cacheprovider

# The benchmark of BENCHMARKS.md: floor loop, bagit-python, ingest, re-run, verify, S3, on one corpus.
# The 100k run measures its ingest's peak RSS growth against the last `make bench-quick` (10k), if any.
bench: system-deps $(STAMP)
	$(PY) bench/run.py --files 100000 --json-out bench/results-100k.json \
		$(if $(wildcard bench/results-10k.json),--baseline bench/results-10k.json)

# The fixed cost of a command that runs a flow: the shared local Prefect server against a temporary one.
bench-command: system-deps $(STAMP)
	$(PY) bench/command_cost.py --json-out bench/results-command.json

bench-quick: system-deps $(STAMP)
	$(PY) bench/run.py --files 10000 --json-out bench/results-10k.json

clean:
	rm -rf $(VENV) $(DEST) .pytest_cache .hypothesis
