# Labhub developer entry points. `make test` is the whole suite (what .ci/run calls);
# `make demo` is the product demo. Both set up what they need on a fresh Debian 12 host.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

VENV        ?= .venv
PY          := $(VENV)/bin/python
BIN         := $(CURDIR)/$(VENV)/bin
STAMP       := $(VENV)/.stamp-$(shell cat tests/requirements.in tests/constraints.txt | sha256sum | cut -c1-12)
SHARED_REF  ?= $(abspath ../shared/reference)
COLL_ROOT   := $(CURDIR)/.cache/ansible_collections
export LABHUB_SHARED_REFERENCE := $(SHARED_REF)
export CONTAINERS_CONF := $(CURDIR)/tests/harness/containers.conf
export ANSIBLE_COLLECTIONS_PATH := $(COLL_ROOT)
export ANSIBLE_ROLES_PATH := $(CURDIR)/roles
export PATH := $(BIN):$(PATH)

.PHONY: help host-deps venv venvs kube base-image os-packages collection-link build lint yamllint ansible-lint role-docs python-lint dashboards docs sanity unit hub-env molecule portal-test hub-test test demo render constraints clean

help:
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

host-deps: ## check Go (>= 1.26, for the test control plane) first, then install missing Debian packages (says which)
	tests/harness/go-check.sh
	tests/harness/host-packages.sh

# --no-compile: pip would byte-compile every file of every package (the `ansible` package alone
# holds thousands); Python compiles what is imported, once, on first use (41 -> 16 s for .venv).
$(STAMP): tests/requirements.in tests/constraints.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --no-compile --upgrade pip
	$(VENV)/bin/pip install -q --no-compile -r tests/requirements.in -c tests/constraints.txt
	rm -f $(VENV)/.stamp-*; touch $@

venv: $(STAMP) collection-link ## controller venv with pinned ansible, collections, molecule, lint, pytest

venvs: venv hub-env ## every environment the suites use: .venv, files/hub (.venv, node_modules), portal/.venv
	$(MAKE) -C portal venv

kube: ## build (or reuse, cached by go.sum) the test Kubernetes control plane, kube-state-metrics and the simulated Grafana sign-in client from Go modules
	tests/harness/kube/build.sh >/dev/null
	tests/harness/kube/build-ksm.sh >/dev/null
	tests/harness/grafana-oauth/build.sh >/dev/null

# Ansible finds this checkout as labhub.platform through a symlinked collections path
# (other collections come from the PyPI `ansible` package inside the venv).
collection-link:
	mkdir -p $(COLL_ROOT)/labhub
	# only when missing or wrong: lanes of `make test` run side by side, and a link being
	# replaced is briefly absent for the other lane
	[ "$$(readlink $(COLL_ROOT)/labhub/platform)" = "$(CURDIR)" ] || ln -sfn $(CURDIR) $(COLL_ROOT)/labhub/platform

base-image: ## build (or reuse) the local Debian 12 systemd image for Molecule
	tests/harness/base-image.sh

os-packages: venv ## the bundle's Debian 12 OS package repository for the Molecule nodes (real bundle_fetch, cached)
	tests/harness/os-packages.sh

build: venv ## build the installable collection tarball
	ansible-galaxy collection build --force --output-path . .

yamllint: venv
	yamllint -s .

ansible-lint: venv
	ansible-lint --offline

role-docs: venv
	tests/harness/role-docs.sh --check

dashboards: venv ## regenerate files/dashboards/*.json from files/dashboards/generate.py (Grafana's foundation SDK)
	$(VENV)/bin/python files/dashboards/generate.py

docs: venv ## regenerate the role READMEs' reference sections from meta/argument_specs.yml (aar-doc)
	tests/harness/role-docs.sh

# ruff and mypy over every Python file of the repository: the collection's plugins (as the package
# Ansible imports), test harness, tests and benchmarks here (.config/ruff.toml, .config/mypy.ini);
# the portal and the hub extensions in their own venvs with their own settings (pyproject.toml).
python-lint: venv
	ruff check --config .config/ruff.toml .
	mypy --config-file .config/mypy.ini -p ansible_collections.labhub.platform.plugins
	mypy --config-file .config/mypy.ini \
	  tests/harness/*.py files/dashboards/generate.py tests/harness/zipimport_cache/*.py tests/harness/kube/*.py tests/simulator/*.py bench/ctr_image.py bench/hardware_facts.py
	$(MAKE) -C portal lint
	$(MAKE) -C files/hub lint

lint: yamllint ansible-lint role-docs python-lint ## yamllint + ansible-lint (production profile) + role READMEs up to date + ruff and mypy

sanity: venv ## ansible-test sanity from an ansible_collections/labhub/platform copy
	tests/harness/sanity.sh

unit: venv hub-env kube ## pytest: modules, schemas, manifests, containerd, kube sites, simulator (two processes side by side)
	tests/harness/unit.sh

# The jupyterhub role's tests start a rendered deployment as a real JupyterHub from the hub
# extensions' pinned venv and proxy.
hub-env:
	$(MAKE) -C files/hub venv proxy

molecule: venv base-image kube os-packages ## every Molecule scenario except the delegated 'real' one
	tests/harness/molecule-all.sh

portal-test: ## the portal's own suite (its own venv), when present
	if [ -f portal/Makefile ]; then $(MAKE) -C portal test; else echo "portal: no suite yet"; fi

hub-test: ## the hub extensions' real-JupyterHub suite, when present
	if [ -f files/hub/Makefile ]; then $(MAKE) -C files/hub test; else echo "hub extensions: no suite yet"; fi

# Setup first, then two lanes side by side (tests/harness/stages.sh): pytest (itself two
# processes, tests/harness/unit.sh) at niceness 10, then the portal's and hub's suites and sanity,
# in one; lint and every Molecule scenario one after the other in the other, at normal priority.
# (Sanity moved to the first lane when a clean-clone run of 169e171 ended it 2.6 minutes before
# the second: 36.7 + setup against 39.3 minutes.)
# The Molecule lane is a chain of short steps that each wait for the last (about 1 core for 22
# minutes alone) and pytest a crowd of processes (1.8 cores for 25 minutes alone): at equal
# priority the chain waited behind the crowd at every step (48 minutes side by side; 44 with
# pytest niced, pytest then ending 7 minutes before Molecule, so portal and hub moved after it).
test: ## the whole suite; ends with a table of minutes per stage
	LABHUB_UNIT_NICE=10 tests/harness/stages.sh host-deps venvs kube base-image os-packages 'unit portal-test hub-test sanity | lint molecule'
	@echo "labhub: all suites passed"

render: venv ## render the local single-node deployment (values + manifests) without a cluster
	ansible-playbook -i inventories/local playbooks/render.yml -e labhub_render_dir=$(CURDIR)/render
	@echo "rendered deployment: $(CURDIR)/render"

demo: ## the product demo (see README)
	if [ -f portal/Makefile ]; then $(MAKE) -C portal demo; else $(MAKE) render; fi

constraints: ## re-pin tests/constraints.txt from tests/requirements.in
	rm -rf /tmp/labhub-pin && python3 -m venv /tmp/labhub-pin
	/tmp/labhub-pin/bin/pip install -q -r tests/requirements.in
	/tmp/labhub-pin/bin/pip freeze | grep -v '^-e' > tests/constraints.txt

clean:
	rm -rf .cache tests/output labhub-platform-*.tar.gz render
