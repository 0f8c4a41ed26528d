# nodeops.kubernetes: every entry point a developer or CI needs.
#
#   make demo          bring the local cluster up and run the demo playbook
#   make test          everything: unit, integration (real control plane), sanity, the support matrix
#                      (NODEOPS_K8S_VERSION=1.34 with cluster, demo, test or bench: that Kubernetes minor)
#                      (and NODEOPS_MUTATING_ADMISSION_POLICY_BETA=1 on 1.34: MutatingAdmissionPolicy v1beta1 on)
#   make cluster       start the local control plane (idempotent)
#   make cluster-down  stop only the processes `make cluster` started
#   make bench         benchmarks/ against baselines (~45 min; not part of test)
#   make bench-scale   the seeds' sizes: 100,000 Jobs, 10,000 nodes, pods that take real time (not part of test)
#
# First runs build the control plane from Go modules and create .venv; both
# are cached (~/.cache/nodeops, GOMODCACHE, GOCACHE, .venv).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
# ANSIBLE_CORE=2.16.* (with make unit or make sanity): that ansible-core, with the newest community `ansible`
# package that goes with it (kubernetes.core comes from it), in a virtualenv of its own, cached like .venv.
# ANSIBLE_PACKAGE pins that `ansible` package (default: the newest pip finds for that ansible-core).
ANSIBLE_CORE ?=
ANSIBLE_PACKAGE ?=
ifneq ($(ANSIBLE_CORE),)
ifeq ($(origin ANSIBLE_CORE),environment)
$(error ANSIBLE_CORE is set in the environment; give it on the command line, for make unit or make sanity only)
endif
ifneq ($(filter-out unit sanity venv link,$(MAKECMDGOALS)),)
$(error ANSIBLE_CORE=$(ANSIBLE_CORE) is for make unit and make sanity only, not $(filter-out unit sanity venv link,$(MAKECMDGOALS)))
endif
VENV := $(CURDIR)/.venv-core-$(subst *,x,$(ANSIBLE_CORE))
endif
# The oldest ansible-core meta/runtime.yml declares: make test runs unit and sanity on it too (oldest-core),
# pinned (its newest patch, and the newest `ansible` package for it) so the run is repeatable.
OLDEST_CORE := 2.16.19
OLDEST_ANSIBLE := 9.13.0
# The tools that run on the default ansible-core only (they pin it themselves).
DEFAULT_CORE_ONLY := ansible|ansible-core|ansible-lint|molecule|ansible-builder|antsibull-changelog
SANITY_DIR := build/sanity$(if $(ANSIBLE_CORE),-core-$(subst *,x,$(ANSIBLE_CORE)))
VPY := $(VENV)/bin/python
COLLECTIONS := $(CURDIR)/build/collections
COLLECTION_LINK := $(COLLECTIONS)/ansible_collections/nodeops/kubernetes
CLUSTER := $(PYTHON) tools/localcluster/cluster.py
PYTEST_ARGS ?=

# NODEOPS_K8S_VERSION=1.34 (with make cluster, demo, test or bench): the local cluster at that Kubernetes minor,
# built from tools/k8s/v1.34/go.mod, in its own state directory (.cluster-v1.34). Default: the newest minor there.
export NODEOPS_K8S_VERSION ?=
# The minor make test also runs the compatibility suite on (k8s-compat).
COMPAT_K8S := 1.34

export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export PYTHONPATH := $(COLLECTIONS)
export NODEOPS_KUBECONFIG := $(shell NODEOPS_K8S_VERSION='$(NODEOPS_K8S_VERSION)' $(PYTHON) tools/localcluster/cluster.py kubeconfig)
ifeq ($(NODEOPS_KUBECONFIG),)
$(error NODEOPS_K8S_VERSION='$(NODEOPS_K8S_VERSION)' selects no cluster (the line above says why))
endif
# How to name this cluster in a command: with its version when it is not the default.
K8S_PREFIX := $(if $(NODEOPS_K8S_VERSION),NODEOPS_K8S_VERSION=$(NODEOPS_K8S_VERSION) )
export ANSIBLE_FORCE_COLOR := 0
# Every Ansible tool (ansible-playbook, molecule, ansible-lint, ansible-galaxy) keeps its files in the
# checkout's .ansible/ (git- and build-ignored), never in ~/.ansible: a copy of this collection under
# ~/.ansible/collections would be found before the work tree. `make test` checks it (tools/home_guard.py).
export ANSIBLE_HOME := $(CURDIR)/.ansible
export ANSIBLE_REMOTE_TMP := $(CURDIR)/.ansible/tmp
NODEOPS_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/nodeops
# ansible-test keeps its cache and sanity virtualenvs in ~/.ansible/test, whatever ANSIBLE_HOME says:
# it runs with this HOME instead, kept with the project's other caches so its virtualenvs are reused
# (outside the checkout, so a fresh clone reuses them too), and with the user's pip configuration file.
ANSIBLE_TEST_HOME := $(NODEOPS_CACHE)/ansible-test-home
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: kyverno-admission k8s-compat runtime-compat oldest-core browser bench bench-scale bench-smoke molecule molecule-isolated lint ee-check help venv link kyverno cluster cluster-down cluster-clean cluster-status demo test unit integration sanity changelog-lint

help:
	@sed -n '2,13p' Makefile | sed 's/^# \{0,1\}//'

venv: $(VENV)/.stamp

$(VENV)/.stamp: requirements-test.txt requirements.txt
	@echo "[venv] creating $(VENV) and installing pinned test dependencies"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
ifeq ($(ANSIBLE_CORE),)
	$(VENV)/bin/pip install --progress-bar off -r requirements-test.txt
else
	@echo "[venv] with ansible-core==$(ANSIBLE_CORE) and the ansible package that goes with it"
	grep -vE '^($(DEFAULT_CORE_ONLY))==' requirements-test.txt > $(VENV)/requirements.txt
	$(VENV)/bin/pip install --progress-bar off -r $(VENV)/requirements.txt 'ansible-core==$(ANSIBLE_CORE)' \
	  'ansible$(if $(ANSIBLE_PACKAGE),==$(ANSIBLE_PACKAGE))' 
endif
	@touch $@

# The collection is importable as ansible_collections.nodeops.kubernetes from
# the working tree through this link.
link:
	@mkdir -p $(dir $(COLLECTION_LINK))
	@ln -sfn $(CURDIR) $(COLLECTION_LINK)

cluster:
	$(CLUSTER) up

# The Kyverno CLI, built from the pinned Kyverno Go module (cached like the control plane).
kyverno:
	$(PYTHON) tools/localcluster/kyverno_tools.py build

# Kyverno's real admission controller (cmd/kyverno, the pinned module) against the local cluster, outside it;
# make cluster-down stops it and deletes its webhook configurations.
kyverno-admission: kyverno cluster
	$(PYTHON) tools/localcluster/kyverno_tools.py admission-up

cluster-down:
	$(CLUSTER) down

cluster-clean:
	$(CLUSTER) clean

cluster-status:
	$(CLUSTER) status

demo: venv link cluster
	KUBECONFIG=$(NODEOPS_KUBECONFIG) $(VENV)/bin/ansible-playbook playbooks/demo.yml
	@echo
	@echo "The local cluster is still running: KUBECONFIG=$(NODEOPS_KUBECONFIG)"
	@echo "Stop it with: $(K8S_PREFIX)make cluster-down"

unit: venv link
	$(VPY) -m pytest tests/unit benchmarks/tests $(PYTEST_ARGS)

# Debian's headless Chromium for the HTML report's browser test (first time only).
browser:
	$(PYTHON) tools/browser.py ensure

# Starts the cluster if needed, and stops it afterwards only if it started it.
integration: venv link kyverno browser
	@was_up=0; $(CLUSTER) status >/dev/null 2>&1 && was_up=1; \
	$(CLUSTER) up; \
	rc=0; $(VPY) -m pytest tests/integration $(PYTEST_ARGS) || rc=$$?; \
	if [ $$was_up = 0 ]; then $(CLUSTER) down; fi; \
	exit $$rc

# The compatibility suite on Kubernetes $(COMPAT_K8S), whose real node runs Debian 12's containerd 1.6 and runc:
# every test that uses the real node (the real_node marker, tests/integration/conftest.py) but the runner's
# time-zone window test (it waits for a minute boundary and depends on neither), the tests marked k8s_compat
# (broadcast_job on simulated nodes, dangling_job_ttl's engine choice and sweep, the bad-input refusals), and
# the role through molecule. The running cluster is stopped first, and started again afterwards if it was up.
# Skipped when make test already runs everything on $(COMPAT_K8S) (NODEOPS_K8S_VERSION=$(COMPAT_K8S)).
COMPAT_TESTS ?= tests/integration -m "real_node or k8s_compat" -k "not closes_the_window_in_its_time_zone"
# Then, with the apiserver restarted with NODEOPS_MUTATING_ADMISSION_POLICY_BETA=1, dangling_job_ttl's engine
# choice and the native engine end to end, on admissionregistration.k8s.io/v1beta1.
MAP_BETA_TESTS ?= tests/integration/test_dangling_jobs_cluster.py -k "native or switching or missing_engine"
k8s-compat: venv link kyverno browser
	@if [ "$$($(CLUSTER) minor)" = "$(COMPAT_K8S)" ]; then \
	  echo "[k8s-compat] the full suite ran on Kubernetes $(COMPAT_K8S) already"; exit 0; fi; \
	was_up=0; $(CLUSTER) status >/dev/null 2>&1 && was_up=1; \
	$(CLUSTER) down >/dev/null; \
	echo "[k8s-compat] the compatibility suite on Kubernetes $(COMPAT_K8S)"; \
	rc=0; ( unset NODEOPS_CLUSTER_DIR; export NODEOPS_K8S_VERSION=$(COMPAT_K8S); \
	  export NODEOPS_KUBECONFIG=$$($(CLUSTER) kubeconfig); \
	  $(CLUSTER) up || { rc=$$?; $(CLUSTER) down; exit $$rc; }; rc=0; \
	  $(VPY) -m pytest $(COMPAT_TESTS) $(PYTEST_ARGS) || rc=$$?; \
	  $(MAKE) --no-print-directory molecule NODEOPS_K8S_VERSION=$(COMPAT_K8S) || rc=$$?; \
	  echo "[k8s-compat] dangling_job_ttl's native engine on MutatingAdmissionPolicy v1beta1 (the apiserver restarted with its gate)"; \
	  export NODEOPS_MUTATING_ADMISSION_POLICY_BETA=1; \
	  if $(CLUSTER) up; then $(VPY) -m pytest $(MAP_BETA_TESTS) $(PYTEST_ARGS) || rc=$$?; else rc=1; fi; \
	  $(CLUSTER) down; exit $$rc ) || rc=$$?; \
	if [ $$was_up = 1 ]; then $(CLUSTER) up; fi; \
	exit $$rc

# The real-node tests on the default cluster with the real node's other runtime, Debian 12's containerd 1.6
# (make test proves that runtime on Kubernetes $(COMPAT_K8S) instead, in k8s-compat): the cluster is
# restarted with it, then stopped (and started again as before if it was up).
RUNTIME_COMPAT_TESTS ?= tests/integration -m real_node -k "not closes_the_window_in_its_time_zone"
runtime-compat: venv link
	@was_up=0; $(CLUSTER) status >/dev/null 2>&1 && was_up=1; \
	$(CLUSTER) down >/dev/null; \
	echo "[runtime-compat] the real-node tests on containerd 1.6 (Debian 12's packages)"; \
	export NODEOPS_CONTAINERD=1.6; $(CLUSTER) up; \
	rc=0; $(VPY) -m pytest $(RUNTIME_COMPAT_TESTS) $(PYTEST_ARGS) || rc=$$?; \
	$(CLUSTER) down; unset NODEOPS_CONTAINERD; \
	if [ $$was_up = 1 ]; then $(CLUSTER) up; fi; \
	exit $$rc

# Fan-out and sweep benchmarks against baselines measured in the same run:
# prints a table, writes benchmarks/results/latest.{json,md,png} and the README table.
# Starts the cluster if needed and stops it after only if it started it.
BENCH_ARGS ?= $(if $(filter-out $(shell $(PYTHON) tools/localcluster/cluster.py default-minor),$(shell NODEOPS_K8S_VERSION='$(NODEOPS_K8S_VERSION)' $(PYTHON) tools/localcluster/cluster.py minor)),,--update-readme)
bench: venv link
	@was_up=0; $(CLUSTER) status >/dev/null 2>&1 && was_up=1; \
	$(CLUSTER) up; rc=0; $(VPY) benchmarks/bench.py --profile full $(BENCH_ARGS) || rc=$$?; \
	if [ $$was_up = 0 ]; then $(CLUSTER) down; fi; exit $$rc

# Issue 26's figures at the seeds' sizes (under 60 min; not part of test): the real node's pod start-to-result
# time first (it calibrates the simulated pods), then benchmarks/bench.py --profile scale, which writes
# benchmarks/results/scale.{json,md,png} and scale-scale.png. Starts the cluster if needed, as bench does.
bench-scale: venv link
	@was_up=0; $(CLUSTER) status >/dev/null 2>&1 && was_up=1; \
	$(CLUSTER) up; rc=0; \
	$(VPY) benchmarks/real_node.py --repeats 5 --out benchmarks/results/real_node.json && \
	$(VPY) benchmarks/bench.py --profile scale $(SCALE_ARGS) || rc=$$?; \
	if [ $$was_up = 0 ]; then $(CLUSTER) down; fi; exit $$rc

# The same harness at a few dozen nodes and Jobs (make test runs it through tests/integration).
bench-smoke: venv link cluster
	$(VPY) benchmarks/bench.py --profile smoke --out build/bench-smoke

# ansible-test runs on the collection exactly as `ansible-galaxy collection
# build` packs it, unpacked under an ansible_collections/nodeops/kubernetes path.
sanity: venv
	@pipver=$$(sed -n "s/^ *pip='\([0-9.]*\)',/\1/p" $(VENV)/lib/python*/site-packages/ansible_test/_internal/python_requirements.py | head -1 | tr . _); \
	  mkdir -p $(ANSIBLE_TEST_HOME)/.ansible/test/cache; \
	  cp tools/ansible_test_get_pip.py $(ANSIBLE_TEST_HOME)/.ansible/test/cache/get_pip_$$pipver.py
	@rm -rf $(SANITY_DIR) $(SANITY_DIR)-dist && mkdir -p $(SANITY_DIR)/ansible_collections/nodeops $(SANITY_DIR)-dist
	$(VENV)/bin/ansible-galaxy collection build --force --output-path $(SANITY_DIR)-dist . >/dev/null
	@mkdir -p $(SANITY_DIR)/ansible_collections/nodeops/kubernetes
	tar -xzf $(SANITY_DIR)-dist/nodeops-kubernetes-*.tar.gz -C $(SANITY_DIR)/ansible_collections/nodeops/kubernetes
	@# build/ is ignored by this repo's git, so ansible-test would see no files: give the copy its own.
	cd $(SANITY_DIR)/ansible_collections/nodeops/kubernetes && git init -q && git add -A
	cd $(SANITY_DIR)/ansible_collections/nodeops/kubernetes && \
	  PIP_CONFIG_FILE=$${PIP_CONFIG_FILE:-$$(ls $$HOME/.config/pip/pip.conf $$HOME/.pip/pip.conf 2>/dev/null | head -1)} \
	  ANSIBLE_COLLECTIONS_PATH=$(CURDIR)/$(SANITY_DIR) PYTHONPATH= HOME=$(ANSIBLE_TEST_HOME) \
	  $(VENV)/bin/ansible-test sanity --python $$($(VPY) -c 'import sys; print("%d.%d" % sys.version_info[:2])') \
	    --requirements --color no

# Like integration: start the cluster if needed, stop it after only if it was not up.
molecule-isolated: venv link kyverno
	@was_up=0; $(CLUSTER) status >/dev/null 2>&1 && was_up=1; \
	$(CLUSTER) up; rc=0; $(MAKE) --no-print-directory molecule || rc=$$?; \
	if [ $$was_up = 0 ]; then $(CLUSTER) down; fi; exit $$rc

# The node_maintenance role's molecule scenario, against the running local cluster.
molecule: venv link cluster kyverno
	cd extensions && PATH=$(VENV)/bin:$$PATH NODEOPS_PYTHON=$(VPY) NO_COLOR=1 ANSIBLE_NOCOLOR=1 \
	  $(VENV)/bin/molecule test -s default

# ansible-builder create on the example EE: no engine here to build it, but the
# build context (Containerfile, requirements) is generated and checked.
ee-check: venv
	@rm -rf build/ee && mkdir -p build/ee
	$(VENV)/bin/ansible-galaxy collection build --force --output-path build/ee . >/dev/null
	cp execution-environment.yml build/ee/
	cd build/ee && $(VENV)/bin/ansible-builder create -f execution-environment.yml --context context --output-filename Dockerfile -v 1
	grep -q 'nodeops-kubernetes-0.1.0.tar.gz' build/ee/context/_build/requirements.yml
	grep -q "ansible-galaxy collection install" build/ee/context/Dockerfile
	test -f build/ee/context/_build/collections/nodeops-kubernetes-0.1.0.tar.gz

# ansible-lint reads the collection through the link in $(COLLECTIONS), like everything else here. Its
# cache goes to ANSIBLE_HOME (above), and --offline stops it installing a built copy of the collection
# there, which it would then check instead of this tree.
lint: venv link
	$(VENV)/bin/ansible-lint --offline --profile production

# Unit tests and sanity on the oldest ansible-core meta/runtime.yml declares, in its own virtualenv.
oldest-core:
	@echo "[oldest-core] unit and sanity on ansible-core $(OLDEST_CORE), the oldest meta/runtime.yml declares"
	$(MAKE) --no-print-directory unit sanity ANSIBLE_CORE='$(OLDEST_CORE)' ANSIBLE_PACKAGE='$(OLDEST_ANSIBLE)'

changelog-lint: venv
	$(VENV)/bin/antsibull-changelog lint

test: venv link
	@$(PYTHON) tools/home_guard.py snapshot build/home-before.json
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory integration
	$(MAKE) --no-print-directory k8s-compat
	$(MAKE) --no-print-directory molecule-isolated
	$(MAKE) --no-print-directory changelog-lint
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory ee-check
	$(MAKE) --no-print-directory sanity
	$(MAKE) --no-print-directory oldest-core
	$(PYTHON) tools/home_guard.py check build/home-before.json
