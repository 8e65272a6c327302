# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 5000

PRISM := .cache/node/node_modules/.bin/prism

.PHONY: install run test test-services lint typecheck validate prism bench screenshots clean

$(BIN)/ivr: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/ivr

# Install, migrate the embedded SQLite database, seed the demo customers and serve
# on http://127.0.0.1:$(PORT) (in-process Redis stand-in, no Twilio account).
run: install
	$(BIN)/ivr db upgrade
	$(BIN)/ivr demo
	$(BIN)/ivr run --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

validate: install
	$(BIN)/ivr flows validate

# Prism (a mock of Twilio's REST API that validates requests against Twilio's OpenAPI
# description, tests/twilio/) for the contract tests; needs Node.js's npm.
prism: $(PRISM)
$(PRISM):
	@if command -v npm >/dev/null 2>&1; then \
		echo "installing Prism for the Twilio contract tests (.cache/node)"; \
		npm install --silent --no-audit --no-fund --prefix .cache/node @stoplight/prism-cli@5; \
	else \
		echo "npm not found: the Prism contract tests will skip (install Node.js to run them)"; \
	fi

# Test workers (pytest-xdist): each gets its own database, Redis database and key prefix;
# whole test files go to one worker, so a module's browser and server start once.
# At most 4: a single Redis has 15 databases to hand out.
PYTEST_PARALLEL ?= -n $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n) --dist loadfile

# The whole suite: lint, types, flow validation, tests (SQLite + in-process Redis
# unless IVR_TEST_DATABASE_URL / IVR_TEST_REDIS_URL point at real services).
test: lint typecheck validate prism
	$(BIN)/pytest $(PYTEST_PARALLEL)

# The same tests against the local PostgreSQL and Redis (what CI runs too).
test-services: install prism
	IVR_TEST_DATABASE_URL=$${IVR_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test} \
	IVR_TEST_REDIS_URL=$${IVR_TEST_REDIS_URL:-redis://127.0.0.1:6379/15} \
	$(BIN)/pytest $(PYTEST_PARALLEL)

# The benchmark (docs/capacity.md): the service under gunicorn as in the Procfile beside a
# bare Flask app and a minimal stateful sample, complete signed journeys at 16 and 64
# connections; PostgreSQL + Redis when IVR_BENCH_DATABASE_URL / IVR_BENCH_REDIS_URL are
# set, else the embedded defaults. BENCH_ARGS passes options (e.g. --seconds 5).
bench: install
	$(BIN)/python -m scripts.bench $(BENCH_ARGS)

# The ops console's pictures for the README: the browser tests (tests/test_ops_browser.py
# and tests/test_ops_calls_browser.py, part of `make test`) save them in tests/artifacts/ops/
# and tests/artifacts/calls/ (or under $IVR_TEST_ARTIFACTS); this copies the last run's
# into docs/screenshots/.
screenshots:
	@shots="$${IVR_TEST_ARTIFACTS:-tests/artifacts}/ops"; \
	if ! ls "$$shots"/*.png >/dev/null 2>&1; then \
		echo "no screenshots in $$shots: run make test (or $(BIN)/pytest tests/test_ops_browser.py) first" >&2; \
		exit 1; \
	fi; \
	mkdir -p docs/screenshots && cp "$$shots"/*.png docs/screenshots/ && \
	echo "copied $$(ls "$$shots"/*.png | wc -l) screenshots from $$shots to docs/screenshots/"; \
	calls="$${IVR_TEST_ARTIFACTS:-tests/artifacts}/calls"; \
	if ls "$$calls"/*.png >/dev/null 2>&1; then \
		for shot in "$$calls"/*.png; do cp "$$shot" "docs/screenshots/calls-$$(basename "$$shot")"; done; \
		echo "copied the call history pages' screenshots from $$calls"; \
	fi

clean:
	rm -rf $(VENV) .cache instance .pytest_cache .mypy_cache .ruff_cache .hypothesis tests/artifacts
