# make bench: the load generator against the release-built daemon, with PostgreSQL, SQLite and bare LMDB
# measured in the same run on the same event bytes. One table on stdout, progress on stderr.
#   make bench                       1,000,000 events (about 4 minutes with a warm build)
#   make bench BENCH_EVENTS=200000   a shorter run
#   make bench-smoke                 a few thousand events against the debug build, no baselines
#   make bench-profile               perf profiles of the append path (16 connections) and of the rebuild,
#                                    300,000 events, no baselines; reports in .build/profile/*.txt
#   make bench-instructions          the writer thread's instructions per append under callgrind (incidentbench
#                                    --commit-only, 5,000 appends on tmpfs): the same count every run, to
#                                    compare two versions of the append path on a noisy machine; then the
#                                    same for the intake thread's work (incidentbench --decode-only, 5,000
#                                    append lines fast-decoded, made into requests and freed, on one thread)
BENCH_EVENTS ?= 1000000
BENCH_SECONDS ?= 8
BENCH_ARGS ?=

PROFILE_EVENTS ?= 300000
PROFILE_DIR ?= $(CURDIR)/.build/profile

INSTRUCTIONS_EVENTS ?= 5000
INSTRUCTIONS_DIR ?= $(CURDIR)/.build/instructions

.PHONY: bench-deps bench-smoke bench-profile bench-instructions

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

# Callgrind cannot read Swift 6.3's DWARF 5, hence the stripped copy. Under valgrind BoringSSL's SHA-256 runs
# its AVX code instead of SHA-NI, many times its native cost, so the count is also given without it.
bench-instructions: deps
	@command -v valgrind >/dev/null 2>&1 || { \
		echo "installing: valgrind"; \
		if [ "$$(id -u)" -ne 0 ]; then SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq valgrind >/dev/null; }
	$(SWIFT) build -c release --product incidentbench
	rm -rf $(INSTRUCTIONS_DIR) && mkdir -p $(INSTRUCTIONS_DIR)
	objcopy --strip-debug $(CURDIR)/.build/release/incidentbench $(INSTRUCTIONS_DIR)/incidentbench
	valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=$(INSTRUCTIONS_DIR)/callgrind.%p \
		$(INSTRUCTIONS_DIR)/incidentbench --commit-only --events $(INSTRUCTIONS_EVENTS) --passes 1 --work-dir /dev/shm \
		>/dev/null 2>$(INSTRUCTIONS_DIR)/valgrind.log
	@f=$$(grep -l 'GroupCommitterC3run' $(INSTRUCTIONS_DIR)/callgrind.*-* | head -1); \
	total=$$(awk '/^summary:/ {print $$2}' $$f); \
	sha=$$(callgrind_annotate $$f 2>/dev/null | awk '/sha256_block_data_order/ {gsub(",", "", $$1); print $$1; exit}'); \
	echo "writer thread: $$((total / $(INSTRUCTIONS_EVENTS))) instructions/append, $$(((total - $${sha:-0}) / $(INSTRUCTIONS_EVENTS))) without SHA-256 ($$f)"
	valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=$(INSTRUCTIONS_DIR)/intake.%p \
		$(INSTRUCTIONS_DIR)/incidentbench --decode-only --events $(INSTRUCTIONS_EVENTS) --passes 1 \
		>/dev/null 2>$(INSTRUCTIONS_DIR)/valgrind-intake.log
	@f=$$(grep -l 'DecodeBenchV10intakeLoop' $(INSTRUCTIONS_DIR)/intake.*-* | head -1); \
	total=$$(awk '/^summary:/ {print $$2}' $$f); \
	sha=$$(callgrind_annotate $$f 2>/dev/null | awk '/sha256_block_data_order/ {gsub(",", "", $$1); print $$1; exit}'); \
	echo "intake thread: $$((total / $(INSTRUCTIONS_EVENTS))) instructions/append, $$(((total - $${sha:-0}) / $(INSTRUCTIONS_EVENTS))) without SHA-256 ($$f)"
