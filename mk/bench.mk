# make bench: the load generator against the release-built daemon, with PostgreSQL, SQLite and bare LMDB
# measured in the same run on the same event bytes. One table on stdout, progress on stderr.
#   make bench                       1,000,000 events (about 4 minutes with a warm build)
#   make bench BENCH_EVENTS=200000   a shorter run
#   make bench-smoke                 a few thousand events against the debug build, no baselines
#   make bench-profile               perf profiles of the append path (16 connections) and of the rebuild,
#                                    300,000 events, no baselines; reports in .build/profile/*.txt
BENCH_EVENTS ?= 1000000
BENCH_SECONDS ?= 8
BENCH_ARGS ?=

PROFILE_EVENTS ?= 300000
PROFILE_DIR ?= $(CURDIR)/.build/profile

.PHONY: bench-deps bench-smoke bench-profile

bench-deps: deps
	@missing=""; for p in $(BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" -ne 0 ]; then SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

bench: bench-deps
	$(SWIFT) build -c release --product incidentd
	$(SWIFT) build -c release --product incidentbench
	$(CURDIR)/.build/release/incidentbench --events $(BENCH_EVENTS) --seconds $(BENCH_SECONDS) $(BENCH_ARGS)

bench-smoke: deps
	$(SWIFT) build --product incidentd
	$(SWIFT) build --product incidentbench
	$(CURDIR)/.build/debug/incidentbench --smoke

bench-profile: bench-deps
	@dpkg -s linux-perf >/dev/null 2>&1 || { \
		echo "installing: linux-perf"; \
		if [ "$$(id -u)" -ne 0 ]; then SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq linux-perf >/dev/null; }
	$(SWIFT) build -c release --product incidentd
	$(SWIFT) build -c release --product incidentbench
	$(CURDIR)/.build/release/incidentbench --events $(PROFILE_EVENTS) --no-baselines --profile $(PROFILE_DIR)
