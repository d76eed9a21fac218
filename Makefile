# incidentd — build, run and test from a fresh Debian machine (as root, Swift toolchain on PATH).
SHELL := /bin/bash
SWIFT ?= swift
RUN_DIR ?= $(CURDIR)/run
SOCKET ?= $(RUN_DIR)/incidentd.sock
SECONDS ?= 60

APT_PACKAGES := liblmdb-dev pkg-config lmdb-utils systemd python3
BENCH_PACKAGES := postgresql sqlite3 libsqlite3-dev

.PHONY: deps build release run stop test bench fuzz sanitize clean

# Installs what is missing, and only that.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" -ne 0 ]; then SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# Builds in release mode, starts incidentd in ./run on embedded defaults, loads the article's incidents.
run: release
	@mkdir -p $(RUN_DIR) && chmod go-w $(RUN_DIR)
	@# Waits until incidentd serves (incidentctl status answers), not for a socket file: one killed with -9 leaves
	@# its socket, which a new daemon replaces only once it has opened the log (longer for a large one, or one it
	@# upgrades). A daemon found running that goes away meanwhile is replaced. At most 10 minutes a daemon.
	@pid=""; started=no; \
	if [ -f $(RUN_DIR)/incidentd.pid ] && kill -0 $$(cat $(RUN_DIR)/incidentd.pid) 2>/dev/null; then \
		pid=$$(cat $(RUN_DIR)/incidentd.pid); echo "incidentd already running (pid $$pid)"; \
	fi; \
	while :; do \
		if [ -z "$$pid" ]; then \
			nohup $(CURDIR)/.build/release/incidentd --data-dir $(RUN_DIR)/data --socket $(SOCKET) \
				>> $(RUN_DIR)/incidentd.log 2>&1 & pid=$$!; echo $$pid > $(RUN_DIR)/incidentd.pid; started=yes; \
		fi; \
		for i in $$(seq 6000); do \
			$(CURDIR)/.build/release/incidentctl status --socket $(SOCKET) --timeout 10 >/dev/null 2>&1 && exit 0; \
			kill -0 $$pid 2>/dev/null || break; sleep 0.1; \
		done; \
		[ $$started = no ] && ! kill -0 $$pid 2>/dev/null || break; \
		echo "incidentd (pid $$pid) went away; starting it again"; pid=""; \
	done; \
	echo "incidentd is not serving $(SOCKET); see $(RUN_DIR)/incidentd.log"; tail -5 $(RUN_DIR)/incidentd.log; exit 1
	@$(CURDIR)/.build/release/incidentctl --version >/dev/null
	@INCIDENTD_SOCKET=$(SOCKET) $(CURDIR)/.build/release/incidentctl append --format table examples/article.jsonl
	@echo
	@echo "incidentd is serving $(SOCKET) (data in $(RUN_DIR)/data, log in $(RUN_DIR)/incidentd.log)."
	@echo "Point incidentctl at it:"
	@echo "  export INCIDENTD_SOCKET=$(SOCKET)"
	@echo "  export PATH=$(CURDIR)/.build/release:\$$PATH"
	@echo "  incidentctl cities"
	@echo "Stop it with: make stop"

stop:
	@if [ -f $(RUN_DIR)/incidentd.pid ]; then kill $$(cat $(RUN_DIR)/incidentd.pid) 2>/dev/null || true; rm -f $(RUN_DIR)/incidentd.pid; echo stopped; fi

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

clean:
	rm -rf .build run

# Further targets (bench, fuzz, sanitize) live in mk/*.mk.
-include mk/*.mk
