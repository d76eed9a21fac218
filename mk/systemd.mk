# make systemd-check: incidentd under a real systemd (Tests/Systemd/boot-check.sh). Builds incidentd and incidentctl
# in release mode with the Swift runtime linked in (release-static, mk/install.mk), stages them with make install
# DESTDIR=... (binaries, units, sysusers.d, tmpfiles.d, incidentd.toml, documentation), boots a Debian bookworm
# container with systemd-nspawn, copies the staged tree into its root, uses the log as its users would (PASS/FAIL
# per check), and powers the container off. Fails if a check fails.
#   make systemd-check                                 about 3 minutes with a warm build and root
#   make systemd-check IDLE_SECONDS=5 LOAD_SECONDS=5   a quick pass: watchdog checks of 5 s instead of 65 s
# Not part of make test: the first run needs the network (debootstrap; the root is kept in .build/systemd-check/rootfs
# and copied for each run) and root.
SYSTEMD_CHECK_PACKAGES := debootstrap systemd-container util-linux
IDLE_SECONDS ?= 65
LOAD_SECONDS ?= 65

.PHONY: systemd-check-deps systemd-check

systemd-check-deps: deps
	@missing=""; for p in $(SYSTEMD_CHECK_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" -ne 0 ]; then SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

systemd-check: systemd-check-deps release-static
	IDLE_SECONDS=$(IDLE_SECONDS) LOAD_SECONDS=$(LOAD_SECONDS) $(CURDIR)/Tests/Systemd/boot-check.sh $(STATIC_SCRATCH)/release
