# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 5000

.PHONY: install run test test-services lint typecheck validate clean

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

# The whole suite: lint, types, flow validation, tests (SQLite + in-process Redis
# unless IVR_TEST_DATABASE_URL / IVR_TEST_REDIS_URL point at real services).
test: lint typecheck validate
	$(BIN)/pytest

# The same tests against the local PostgreSQL and Redis (what CI runs too).
test-services: install
	IVR_TEST_DATABASE_URL=$${IVR_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test} \
	IVR_TEST_REDIS_URL=$${IVR_TEST_REDIS_URL:-redis://127.0.0.1:6379/15} \
	$(BIN)/pytest

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache tests/artifacts
