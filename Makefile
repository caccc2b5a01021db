# The two commands a user needs: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
SUDO   := $(if $(filter 0,$(shell id -u)),,sudo)

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export DO_NOT_TRACK := 1

.PHONY: demo test install lock clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	rm -rf examples/out
	$(BIN)/curate run examples/quickstart.yaml
	rm -rf examples/out-images
	$(BIN)/curate run examples/quickstart-images.yaml
	rm -rf examples/out-audio
	$(BIN)/curate run examples/quickstart-audio.yaml

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -q --durations=25

# The UI test drives Debian's Chromium with Playwright; Playwright's own browser download is not used.
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null

# Re-pin every installed package after changing pyproject.toml's dependencies.
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^curate' > constraints.txt

clean:
	rm -rf $(VENV) examples/out examples/out-images examples/out-audio .pytest_cache
