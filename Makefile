# Two commands on a fresh machine:
#   make lab    install everything and open JupyterLab on notebooks/
#   make test   install everything (Chromium included) and run the whole suite
# Everything else here is a step of those two.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUNDLE := rtc_widgets/static/widget.js
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages: Chromium for browser tests, coturn and iptables for network tests.
SYSTEM_PACKAGES := chromium iproute2 iptables coturn

.PHONY: lab test system venv js lint typecheck js-check pytest wheel-check bench clean

# containers often run as root, where jupyter refuses to start without --allow-root
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: venv
	cd notebooks && ../$(VENV)/bin/jupyter lab $(LAB_ARGS)

test: system venv lint typecheck js-check pytest wheel-check

system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# The venv is (re)built when pyproject.toml changes. The JS bundle is built first and the editable install skips
# hatch-jupyter-builder's npm step (it would run npm again on every editable install).
$(VENV)/.installed: pyproject.toml | $(BUNDLE)
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	SKIP_JUPYTER_BUILDER=1 $(PY) -m pip install -q -e ".[test,lab,fast]"
	touch $@

venv: $(VENV)/.installed

js/node_modules/.package-lock.json: js/package.json js/package-lock.json
	cd js && npm ci --no-audit --no-fund

$(BUNDLE): js/node_modules/.package-lock.json $(shell find js/src js/scripts -type f) rtc_widgets/protocol/protocol.json
	cd js && npm run build

js: $(BUNDLE)

lint: venv
	$(VENV)/bin/ruff check rtc_widgets tests benchmarks
	$(VENV)/bin/ruff format --check rtc_widgets tests benchmarks

typecheck: venv
	$(VENV)/bin/mypy

js-check: js
	cd js && npm run check

# Exit code 5 (no tests collected) is an error like any other non-zero code.
pytest: venv
	$(PY) -m pytest tests/unit tests/browser tests/network

# The wheel must carry the built bundle (a clean build from the sdist-like tree, npm included).
wheel-check: venv
	rm -rf dist && $(PY) -m pip wheel -q --no-deps -w dist .
	$(PY) -c "import sys, zipfile, glob; names = zipfile.ZipFile(glob.glob('dist/*.whl')[0]).namelist(); \
	need = ['rtc_widgets/static/widget.js', 'rtc_widgets/static/statsview.js', 'rtc_widgets/protocol/protocol.json', \
	        '.data/data/etc/jupyter/jupyter_server_config.d/rtc_widgets.json']; \
	missing = [n for n in need if not any(m.endswith(n) for m in names)]; \
	print('wheel is missing', missing if missing else 'nothing: bundles, protocol and server config are in'); \
	sys.exit(1 if missing else 0)"

bench: system venv
	$(PY) -m benchmarks.datachannel
	$(PY) -m benchmarks.signaling
	$(PY) -m benchmarks.media
	$(PY) -m benchmarks.relay_media

clean:
	rm -rf $(VENV) js/node_modules rtc_widgets/static js/src/generated dist test-artifacts
