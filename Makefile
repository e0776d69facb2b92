# statewall: see README.md. `make demo` and `make test` are the two commands
# a newcomer needs; both install what they need themselves.
GO      ?= go
BIN     := bin/statewall
PKGS    := ./...
GOFILES := $(shell find cmd pkg scripts -name '*.go' 2>/dev/null)

.PHONY: all build demo test deps vet fmt-check lint fuzz clean

all: build

build: $(BIN)

$(BIN): $(GOFILES) go.mod go.sum
	$(GO) build -o $(BIN) ./cmd/statewall

# The demo replays bundled captures of real traffic (made between network
# namespaces by scripts/make-captures.sh and make-attack-captures.sh) twice:
# from the client's side with a workstation ruleset (replies: only stateful
# passes them), and from the server's side with a ruleset written the
# stateless way (scans and injected packets: only stateless passes them).
demo: $(BIN)
	@echo "### 1. A workstation (198.18.0.1) that may call out: rules/workstation.rules"
	$(BIN) replay --rules rules/workstation.rules testdata/http-curl-v4.pcap testdata/dns-udp.pcap testdata/ping-v4.pcap testdata/udp-port-unreach.pcap
	@echo
	@echo "### 2. A web server (198.18.0.2) under scans and injection: rules/stateless-ack.rules"
	$(BIN) replay --rules rules/stateless-ack.rules testdata/nmap-ack-scan.pcap testdata/nmap-xmas-scan.pcap testdata/hping3-out-of-window.pcap

# Installs the Debian tools the namespace tests use (when root and missing),
# then runs formatting, vet, staticcheck and every test with the race detector.
deps:
	@scripts/install-deps.sh

fmt-check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

# staticcheck, pinned in go.mod as a tool (go tool staticcheck), with the
# doc-comment checks of staticcheck.conf.
lint:
	$(GO) tool staticcheck $(PKGS)

# STATEWALL_ROOT_TESTS=1: the tests that need root run (as root) or fail;
# they never skip here (internal/testenv). A plain `go test ./...` as
# another user skips them.
test: deps fmt-check vet lint
	STATEWALL_ROOT_TESTS=1 $(GO) test -race -count=1 -timeout 60m $(PKGS)

# Fuzz each target for FUZZTIME (the seed corpora, and the findings kept as
# seeds in each package's testdata/fuzz, run in `make test`).
FUZZTIME ?= 60s
FUZZ_TARGETS := \
	./pkg/packet:FuzzDecode ./pkg/packet:FuzzDecodeAgainstGopacket \
	./pkg/rules:FuzzParse ./pkg/conntrack/tcpstate:FuzzStep ./pkg/conntrack:FuzzTrack \
	./pkg/defrag:FuzzReassemble ./pkg/replay:FuzzReplayFile ./internal/pcaprewrite:FuzzRewritePacket \
	./pkg/hasync:FuzzDecode
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "== $$fn ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# The randomized differential test against the kernel (as root), for any
# seeds: SEEDS=a-b or a list (1,5,10-20), GATES=comma-separated generator
# gates, all or none (default: the make-test budget's; internal/convgen
# documents them). `make test` runs the budget, seeds 1-4000. Every
# disagreement is minimized against the kernel and written to a directory
# the output names (FUZZ_KERNEL_FLAGS=-out=DIR to choose it,
# -max-findings=0 for all of them).
.PHONY: fuzz-kernel
SEEDS ?= 1-20000
GATES ?=
FUZZ_KERNEL_FLAGS ?= -max-findings=10
fuzz-kernel: deps
	STATEWALL_ROOT_TESTS=1 $(GO) test -count=1 -timeout 0 -run '^TestKernelDifferential$$' -v ./internal/kerneldiff/ \
		-args -seeds='$(SEEDS)' -gates='$(GATES)' $(FUZZ_KERNEL_FLAGS)

clean:
	rm -rf bin

# make install: the binary (-trimpath; `statewall version` names the
# commit), the systemd unit with the binary's and the rules' paths put in,
# /etc/statewall/statewall.rules from rules/workstation.rules unless one is
# there already, the man pages statewall(8) and statewall.rules(5) (made
# from the help text and pkg/rules' documentation: docs/man/, kept current
# by TestManPages), and the bash and zsh completions. DESTDIR and PREFIX as
# usual; each directory can be set on its own. TestMakeInstall
# (cmd/statewall) runs it into a scratch DESTDIR and checks the result.
.PHONY: install
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man
SYSCONFDIR  ?= /etc
UNITDIR     ?= $(PREFIX)/lib/systemd/system
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
INSTALL_GOFLAGS ?= -trimpath -buildvcs=auto
install:
	$(GO) build $(INSTALL_GOFLAGS) -o bin/install/statewall ./cmd/statewall
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR)
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/statewall
	install -m 0755 bin/install/statewall $(DESTDIR)$(BINDIR)/statewall
	sed -e 's|/usr/local/bin/statewall|$(BINDIR)/statewall|g' -e 's|/etc/statewall/|$(SYSCONFDIR)/statewall/|g' \
		scripts/statewall.service > bin/install/statewall.service
	install -m 0644 bin/install/statewall.service $(DESTDIR)$(UNITDIR)/statewall.service
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/statewall/statewall.rules ]; then \
		echo "$(DESTDIR)$(SYSCONFDIR)/statewall/statewall.rules exists: kept"; \
	else \
		echo "install -m 0644 rules/workstation.rules $(DESTDIR)$(SYSCONFDIR)/statewall/statewall.rules"; \
		install -m 0644 rules/workstation.rules $(DESTDIR)$(SYSCONFDIR)/statewall/statewall.rules; \
	fi
	install -m 0644 docs/man/statewall.8 $(DESTDIR)$(MANDIR)/man8/statewall.8
	install -m 0644 docs/man/statewall.rules.5 $(DESTDIR)$(MANDIR)/man5/statewall.rules.5
	bin/install/statewall completion bash > bin/install/statewall.bash
	bin/install/statewall completion zsh > bin/install/_statewall
	install -m 0644 bin/install/statewall.bash $(DESTDIR)$(BASHCOMPDIR)/statewall
	install -m 0644 bin/install/_statewall $(DESTDIR)$(ZSHCOMPDIR)/_statewall

# The offline benchmark (bench/README.md says how to read it): decode,
# stateless, stateful and compare, interleaved, on generated traffic of 1k,
# 100k and 1M connections and on generated rulesets of 10 to 10,000 rules.
# About 2 minutes on the 2-core development VM. It rewrites
# bench/results/offline.{md,csv,json} and the SVG charts, which are
# committed as the record, with the command that made them.
.PHONY: bench bench-smoke
BENCH_FLAGS ?= --rules bench/server.rules --flows 1k,100k,1M --rule-counts 10,100,1k,10k --packets 2M --reps 5
bench: $(BIN)
	$(BIN) bench $(BENCH_FLAGS) --out bench/results

# The same harness at tiny sizes (seconds), into a scratch directory, with
# captures too; then the harness's and the generator's own tests.
BENCH_SMOKE_DIR ?= $(or $(TMPDIR),/tmp)/statewall-bench-smoke
bench-smoke: $(BIN)
	$(BIN) bench --rules bench/server.rules --flows 100,1k --rule-counts 10,100 --rule-flows 1k \
		--packets 20k --reps 2 --warm-rounds 3 --out $(BENCH_SMOKE_DIR) testdata/ping-v4.pcap testdata/http-curl-v4.pcap
	$(GO) test -count=1 ./bench/trafficgen/ ./bench/harness/

# The live benchmark (bench/README.md, section "Live"; as root): namespaces
# client - router - server, and on the router's forward path no filter,
# nftables, a minimal accept-all NFQUEUE reader and statewall run in its
# three modes with one and two queues, interleaved, 3 repetitions, each
# measuring UDP packets/s, TCP bulk, TCP connections/s and latency. About 8
# minutes on the 2-core development VM. It rewrites
# bench/results/live.{md,csv,svg}. LIVE_FLAGS: e.g. REPS=1 DUR=1
# CONFIGS="nofilter nft sw-stateful-q1" OUT=/tmp/live.
.PHONY: bench-live
LIVE_FLAGS ?=
bench-live: deps
	env $(LIVE_FLAGS) LIVE_COMMAND="make bench-live" timeout 1200 bench/live/run.sh

# The failover demo (issue #20; as root; scripts/ha-demo.sh says more):
# namespaces client - [router a | router b] - server, statewall stateful
# on both routers, keepalived moving the gateway addresses (unicast VRRP,
# scripts/ha/keepalived.conf.in: also the example for a pair of your own).
# Under load (N connections that exchange a line every 500 ms, a paced bulk
# transfer), router a dies hard and b takes over: once with state sync,
# once without it (the control). It ends with one line per run,
# connections kept and transfer complete, and fails unless the run with
# sync kept everything. About a minute on the 2-core development VM.
# Settings as variables: make ha-demo N=40 DURATION=12 KEEP=1.
.PHONY: ha-demo
ha-demo: $(BIN)
	@scripts/install-deps.sh ip keepalived
	$(GO) build -o bin/haload ./internal/cmd/haload
	STATEWALL=$(BIN) HALOAD=bin/haload timeout 900 scripts/ha-demo.sh
