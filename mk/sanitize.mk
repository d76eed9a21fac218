# make sanitize: builds everything (daemon, CLI, tests) with AddressSanitizer, then with ThreadSanitizer, each in
# its own scratch path (.build-asan, .build-tsan), and runs the whole test suite against the instrumented
# incidentd and incidentctl. Each daemon, CLI and test process writes any report to
# .build-<x>san/sanitizer-reports/; the target fails if a test fails or any report was written (a daemon killed
# with SIGKILL by the crash tests cannot fail through its exit status, so the reports are what counts).
# One sanitizer only: make sanitize SANITIZERS=thread
#
# Suppressions: leaks in third-party code (TOMLKit, swift-argument-parser's exit path, XCTest's runner), see
# mk/lsan.supp; and ThreadSanitizer's false reports on Synchronization.Mutex, which it cannot see on Linux, see
# mk/tsan.supp. Nothing else: no AddressSanitizer error and no other race is suppressed.

SANITIZERS ?= address thread

.PHONY: sanitize sanitize-address sanitize-thread

sanitize: deps
	@set -e; for s in $(SANITIZERS); do $(MAKE) --no-print-directory sanitize-$$s; done
	@echo "sanitize: $(SANITIZERS): clean"

sanitize-address: SANITIZER_SCRATCH := $(CURDIR)/.build-asan
sanitize-address: SANITIZER_ENV := ASAN_OPTIONS=log_path=$(CURDIR)/.build-asan/sanitizer-reports/asan:detect_leaks=1:detect_stack_use_after_return=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/mk/lsan.supp:print_suppressions=0
sanitize-thread: SANITIZER_SCRATCH := $(CURDIR)/.build-tsan
sanitize-thread: SANITIZER_ENV := TSAN_OPTIONS=log_path=$(CURDIR)/.build-tsan/sanitizer-reports/tsan:halt_on_error=0:second_deadlock_stack=1:suppressions=$(CURDIR)/mk/tsan.supp:print_suppressions=0

sanitize-address sanitize-thread: sanitize-%:
	$(SWIFT) build --build-tests --sanitize=$* --scratch-path $(SANITIZER_SCRATCH)
	@rm -rf $(SANITIZER_SCRATCH)/sanitizer-reports && mkdir -p $(SANITIZER_SCRATCH)/sanitizer-reports
	$(SANITIZER_ENV) INCIDENTD_SANITIZER=$* INCIDENTD_BIN_DIR=$(SANITIZER_SCRATCH)/debug \
		$(SWIFT) test --skip-build --sanitize=$* --scratch-path $(SANITIZER_SCRATCH) $(if $(FILTER),--filter '$(FILTER)')
	@if [ -n "$$(ls -A $(SANITIZER_SCRATCH)/sanitizer-reports)" ]; then \
		echo "$* sanitizer reports in $(SANITIZER_SCRATCH)/sanitizer-reports:"; \
		head -60 $(SANITIZER_SCRATCH)/sanitizer-reports/*; exit 1; \
	fi
	@echo "sanitize-$*: no reports"
