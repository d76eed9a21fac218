# make systemd-check: incidentd under a real systemd (Tests/Systemd/boot-check.sh). Builds incidentd and incidentctl
# in release mode with the Swift runtime linked in (--static-swift-stdlib, in .build/static so that .build/release
# stays as make release and make bench leave it: a change of that flag recompiles everything), boots a Debian
# bookworm container with systemd-nspawn, installs the binaries, units, sysusers.d, tmpfiles.d and incidentd.toml as
# a package would, uses the log as its users would (PASS/FAIL per check), and powers the container off. Fails if a
# check fails.
#   make systemd-check                                 about 3 minutes with a warm build and root
#   make systemd-check IDLE_SECONDS=5 LOAD_SECONDS=5   a quick pass: watchdog checks of 5 s instead of 65 s
# Not part of make test: the first run needs the network (debootstrap; the root is kept in .build/systemd-check/rootfs
# and copied for each run) and root.
SYSTEMD_CHECK_PACKAGES := debootstrap systemd-container util-linux
STATIC_SCRATCH ?= $(CURDIR)/.build/static
IDLE_SECONDS ?= 65
LOAD_SECONDS ?= 65

.PHONY: systemd-check-deps release-static systemd-check

systemd-check-deps: deps
	@missing=""; for p in $(SYSTEMD_CHECK_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" -ne 0 ]; then SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# What a server without the Swift toolchain can run: only liblmdb0 and libstdc++6 besides libc (see ldd).
release-static: deps
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path $(STATIC_SCRATCH) --product incidentd
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path $(STATIC_SCRATCH) --product incidentctl

systemd-check: systemd-check-deps release-static
	IDLE_SECONDS=$(IDLE_SECONDS) LOAD_SECONDS=$(LOAD_SECONDS) $(CURDIR)/Tests/Systemd/boot-check.sh $(STATIC_SCRATCH)/release
