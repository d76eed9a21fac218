# make install: what a server needs, as a package would lay it out (README.md, "Installing"):
#   $(BINDIR)            incidentd, incidentctl (0755), built with the Swift runtime linked in (release-static), so
#                        that they run without the Swift toolchain: only liblmdb0 besides libc and libstdc++6
#   $(UNITDIR)           incidentd.service, incidentd.socket, incidentd-verify.service, incidentd-verify.timer, with
#                        ExecStart= naming $(BINDIR) and Documentation= $(DOCDIR)
#   $(SYSUSERSDIR)       incidentd.conf (systemd/incidentd.sysusers.conf)
#   $(TMPFILESDIR)       incidentd.conf (systemd/incidentd.tmpfiles.conf)
#   $(CONFDIR)           incidentd.toml, unless one is there already (it is kept as it is, and the run says so)
#   $(DOCDIR)            README.md, PROTOCOL.md, SPEC.md, cities.toml (the compiled-in gazetteer, to copy and edit for
#                        gazetteer.file), examples/article.jsonl
# Every path is under DESTDIR, for staging. PREFIX is /usr/local, which the units' ExecStart= name as shipped, and
# systemd, systemd-sysusers and systemd-tmpfiles look in $(PREFIX)/lib; another PREFIX rewrites the units' paths, and
# where systemd does not look (PREFIX=/opt/incidentd), the run says so and how to link the units and snippets.
# Installed into the real root (no DESTDIR), it prints what to run next.
#   make install                                 builds the static binaries in .build/static first (a few minutes)
#   make install INSTALL_FROM=DIR                installs DIR/incidentd and DIR/incidentctl, built already
#   make install DESTDIR=/tmp/stage PREFIX=/usr
# make uninstall removes what make install installed, and leaves $(CONFDIR) and the log (/var/lib/incidentd) alone;
# in the real root it refuses while systemd has incidentd's units enabled or running, saying how to stop them first.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
DOCDIR ?= $(PREFIX)/share/doc/incidentd
SYSCONFDIR ?= /etc
CONFDIR ?= $(SYSCONFDIR)/incidentd
DESTDIR ?=
INSTALL_FROM ?=
# The static build, which make systemd-check uses too; kept apart from .build/release, which make release and make
# bench leave without the flag: a change of it recompiles everything.
STATIC_SCRATCH ?= $(CURDIR)/.build/static

INSTALLED_UNITS := incidentd.service incidentd.socket incidentd-verify.service incidentd-verify.timer
INSTALLED_DOCS := README.md PROTOCOL.md SPEC.md

.PHONY: release-static install uninstall

# What a server without the Swift toolchain can run: only liblmdb0 and libstdc++6 besides libc (see ldd).
release-static: deps
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path $(STATIC_SCRATCH) --product incidentd
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path $(STATIC_SCRATCH) --product incidentctl

install: $(if $(INSTALL_FROM),,release-static)
	@set -e; from="$(or $(INSTALL_FROM),$(STATIC_SCRATCH)/release)"; \
	for bin in incidentd incidentctl; do [ -x "$$from/$$bin" ] || { echo "make install: no $$from/$$bin"; exit 1; }; done; \
	install -d -m 0755 "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(UNITDIR)" "$(DESTDIR)$(SYSUSERSDIR)" "$(DESTDIR)$(TMPFILESDIR)" \
		"$(DESTDIR)$(CONFDIR)" "$(DESTDIR)$(DOCDIR)/examples"; \
	install -m 0755 "$$from/incidentd" "$$from/incidentctl" "$(DESTDIR)$(BINDIR)/"; \
	for unit in $(INSTALLED_UNITS); do \
		sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/usr/local/share/doc/incidentd/|$(DOCDIR)/|g' \
			"systemd/$$unit" >"$(DESTDIR)$(UNITDIR)/.$$unit.tmp"; \
		chmod 0644 "$(DESTDIR)$(UNITDIR)/.$$unit.tmp"; \
		mv -f "$(DESTDIR)$(UNITDIR)/.$$unit.tmp" "$(DESTDIR)$(UNITDIR)/$$unit"; \
	done; \
	install -m 0644 systemd/incidentd.sysusers.conf "$(DESTDIR)$(SYSUSERSDIR)/incidentd.conf"; \
	install -m 0644 systemd/incidentd.tmpfiles.conf "$(DESTDIR)$(TMPFILESDIR)/incidentd.conf"; \
	install -m 0644 $(INSTALLED_DOCS) config/cities.toml "$(DESTDIR)$(DOCDIR)/"; \
	install -m 0644 examples/article.jsonl "$(DESTDIR)$(DOCDIR)/examples/"; \
	if [ -e "$(DESTDIR)$(CONFDIR)/incidentd.toml" ]; then \
		cmp -s config/incidentd.toml "$(DESTDIR)$(CONFDIR)/incidentd.toml" || \
			echo "make install: kept $(DESTDIR)$(CONFDIR)/incidentd.toml as it is; it differs from config/incidentd.toml, which documents every setting"; \
	else \
		install -m 0644 config/incidentd.toml "$(DESTDIR)$(CONFDIR)/incidentd.toml"; \
	fi; \
	echo "make install: incidentd and incidentctl in $(DESTDIR)$(BINDIR), units in $(DESTDIR)$(UNITDIR), settings in $(DESTDIR)$(CONFDIR)"; \
	units_seen=yes; \
	case "$(patsubst %/,%,$(UNITDIR))" in /etc/systemd/system|/usr/local/lib/systemd/system|/usr/lib/systemd/system|/lib/systemd/system) ;; *) units_seen=""; \
		echo "make install: systemd does not look for units in $(UNITDIR): link them (below), or install with UNITDIR=/etc/systemd/system";; esac; \
	for pair in "$(SYSUSERSDIR) sysusers.d" "$(TMPFILESDIR) tmpfiles.d"; do \
		set -- $$pair; case "$${1%/}" in /etc/$$2|/usr/local/lib/$$2|/usr/lib/$$2|/lib/$$2) ;; *) \
			echo "make install: systemd-$${2%.d} reads /etc/$$2 at boot, not $$1: link the file there (below), or install with $$(echo $${2%.d} | tr a-z A-Z)DIR=/etc/$$2";; esac; \
	done; \
	if [ -z "$(DESTDIR)" ]; then \
		echo "Next, as root: make the user and groups, the state and socket directories, and start serving"; \
		for pair in "$(SYSUSERSDIR) sysusers.d" "$(TMPFILESDIR) tmpfiles.d"; do \
			set -- $$pair; case "$${1%/}" in /etc/$$2|/usr/local/lib/$$2|/usr/lib/$$2|/lib/$$2) ;; *) \
				echo "  ln -sf $$1/incidentd.conf /etc/$$2/incidentd.conf";; esac; \
		done; \
		echo "  systemd-sysusers $(SYSUSERSDIR)/incidentd.conf"; \
		echo "  systemd-tmpfiles --create $(TMPFILESDIR)/incidentd.conf"; \
		[ -n "$$units_seen" ] || echo "  systemctl link $(addprefix $(UNITDIR)/,$(INSTALLED_UNITS))"; \
		echo "  systemctl daemon-reload"; \
		echo "  systemctl enable --now incidentd.socket          # incidentd starts at the first connection"; \
		echo "  systemctl enable --now incidentd-verify.timer    # verify the log every day"; \
		echo "then give each user the socket's group and a role (README.md, \"Operations\"), then a new login:"; \
		echo "  usermod -aG incidentd-clients,incidentd-readers alice"; \
	fi

uninstall:
	@set -e; \
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then \
		busy=""; for unit in incidentd.socket incidentd.service incidentd-verify.timer; do \
			if systemctl -q is-enabled "$$unit" 2>/dev/null || systemctl -q is-active "$$unit" 2>/dev/null; then busy="$$busy $$unit"; fi; \
		done; \
		if [ -n "$$busy" ]; then \
			echo "make uninstall: systemd has$$busy enabled or running; first: systemctl disable --now incidentd.socket incidentd.service incidentd-verify.timer"; \
			exit 1; \
		fi; \
	fi; \
	rm -f "$(DESTDIR)$(BINDIR)/incidentd" "$(DESTDIR)$(BINDIR)/incidentctl" \
		$(addprefix "$(DESTDIR)$(UNITDIR)/,$(addsuffix ",$(INSTALLED_UNITS))) \
		"$(DESTDIR)$(SYSUSERSDIR)/incidentd.conf" "$(DESTDIR)$(TMPFILESDIR)/incidentd.conf" \
		$(addprefix "$(DESTDIR)$(DOCDIR)/,$(addsuffix ",$(INSTALLED_DOCS) cities.toml examples/article.jsonl)); \
	rmdir "$(DESTDIR)$(DOCDIR)/examples" "$(DESTDIR)$(DOCDIR)" 2>/dev/null || true; \
	echo "make uninstall: removed incidentd's binaries, units, sysusers.d and tmpfiles.d files and documentation; left $(DESTDIR)$(CONFDIR) and the log in /var/lib/incidentd"; \
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then echo "Next, as root: systemctl daemon-reload"; fi
