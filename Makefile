# Fruits! ingestion — every target creates .venv when missing and installs what it needs (idempotent).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
EXTRAS := lambda,spark,local,cdk,dev
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)
DEMO_ARGS ?=
CDK_CLI := node_modules/.bin/cdk

.PHONY: help demo test lint bench synth java clean lock image-check

help:
	@echo "make demo   - run the whole loop locally (moto + local Spark) on the Fruits-360 sample"
	@echo "make test   - lint + full pytest suite (moto, local Spark, CDK synth)"
	@echo "make lint   - ruff check + ruff format --check (lambdas, tests/lambdas, tests/helpers)"
	@echo "make bench  - benchmarks; figures to bench/results/*.json and bench/README.md"
	@echo "make lock   - re-pin constraints.txt from the installed .venv (after editing pyproject.toml)"
	@echo "make synth  - cdk synth with the aws-cdk CLI (offline, no Docker, no credentials)"
	@echo "make image-check - the EMR image's requirements resolve to wheels for its platform (needs PyPI, no Docker)"

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (Python 3.11 is required)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PY) -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

# The aws-cdk CLI from npm, pinned in package.json / package-lock.json.
$(CDK_CLI): package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "error: npm (Node 20) is required for the aws-cdk CLI" >&2; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(CDK_CLI)

java:
	@command -v java >/dev/null 2>&1 || { echo "error: Java 17 is required by Spark (install openjdk-17-jre-headless)" >&2; exit 1; }
	@java -version 2>&1 | head -1 | grep -qE '"(17|21)\.' || { echo "error: Java 17 is required by Spark; found: $$(java -version 2>&1 | head -1)" >&2; exit 1; }

demo: $(STAMP) java
	$(VENV)/bin/fruits demo $(DEMO_ARGS)

# The formatter covers the paths whose owners run it (the ingestion core, its tests and helpers); widen FORMATTED
# as other packages are formatted in their own change (one repo-wide reformat would touch everyone's files).
FORMATTED ?= lambdas tests/lambdas tests/helpers

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check $(FORMATTED)

test: $(STAMP) java lint $(CDK_CLI)
	$(VENV)/bin/pytest -q

bench: $(STAMP) java
	$(PY) -m bench.run_all

synth: $(STAMP) $(CDK_CLI)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" CDK_DISABLE_VERSION_CHECK=1 JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 $(CDK_CLI) synth --quiet --no-notices

# cdk/emr_image/requirements.txt resolved (metadata only) for Python 3.11 / glibc 2.34 on ARM64 and X86_64.
image-check: $(STAMP)
	$(PY) -m cdk.image_check

clean:
	rm -rf lake cdk.out .pytest_cache .ruff_cache

# Re-pin every installed package (the project itself excluded) into constraints.txt.
lock: $(PY)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	{ echo "# Pinned versions of every package make installs (pip constraints), so CI resolves what was tested."; \
	  echo "# Regenerate after changing pyproject.toml: make lock"; \
	  $(PY) -m pip freeze --exclude-editable | grep -v '^#'; } > constraints.txt
