# The two commands a fresh machine needs: `make demo` and `make test`.
# Both install everything first (a virtualenv in .venv, pinned by constraints.txt).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEST   ?= ./archive-store

.PHONY: install demo test test-fast bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Ingest the sample corpus into ./archive-store on the local store (no server needed),
# then list the committed runs. Run it twice: the second run adds no documents.
demo: $(STAMP)
	$(VENV)/bin/archive ingest examples --dest $(DEST) --collection examples
	$(VENV)/bin/archive runs --dest $(DEST)

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) $(DEST) .pytest_cache .hypothesis
