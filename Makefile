# The two commands a fresh machine needs: `make demo` and `make test`.
# Both install everything first (a virtualenv in .venv, pinned by constraints.txt).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEST   ?= ./archive-store

# OCR and PDF rendering come from Debian's packages (installed when missing; needs root or sudo).
SYSTEM_PACKAGES := tesseract-ocr tesseract-ocr-eng poppler-utils fonts-dejavu-core

.PHONY: install system-deps demo test bench bench-quick clean

install: system-deps $(STAMP)

system-deps:
	@if command -v tesseract >/dev/null && command -v pdftoppm >/dev/null \
	    && [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "Installing $(SYSTEM_PACKAGES)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	elif command -v sudo >/dev/null; then \
	  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	else \
	  echo "warning: cannot install $(SYSTEM_PACKAGES) (not root, no sudo): page scans will be quarantined as needs-ocr"; \
	fi

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Ingest the sample corpus into ./archive-store on the local store (no server needed),
# then list the committed runs. Run it twice: the second run adds no documents.
demo: system-deps $(STAMP)
	$(VENV)/bin/archive ingest examples --dest $(DEST) --collection examples
	$(VENV)/bin/archive runs --dest $(DEST)

test: system-deps $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) $(DEST) .pytest_cache .hypothesis
