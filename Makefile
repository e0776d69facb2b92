# statewall: see README.md. `make demo` and `make test` are the two commands
# a newcomer needs; both install what they need themselves.
GO      ?= go
BIN     := bin/statewall
PKGS    := ./...
GOFILES := $(shell find cmd pkg scripts -name '*.go' 2>/dev/null)

.PHONY: all build demo test deps vet fmt-check fuzz clean

all: build

build: $(BIN)

$(BIN): $(GOFILES) go.mod go.sum
	$(GO) build -o $(BIN) ./cmd/statewall

# The demo replays bundled captures of real traffic (a web session, DNS, a
# ping and an nmap ACK scan, made by scripts/make-captures.sh) against a
# ruleset written the stateless way, and shows where the two modes differ.
DEMO_RULES ?= rules/stateless-ack.rules
DEMO_PCAPS ?= testdata/http-curl-v4.pcap testdata/dns-udp.pcap testdata/ping-v4.pcap testdata/nmap-ack-scan.pcap
demo: $(BIN)
	$(BIN) replay --rules $(DEMO_RULES) --format text $(DEMO_PCAPS)

# Installs the Debian tools the namespace tests use (when root and missing),
# then runs formatting, vet and every test with the race detector.
deps:
	@scripts/install-deps.sh

fmt-check:
	@out=$$(gofmt -l cmd pkg scripts); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

test: deps fmt-check vet
	$(GO) test -race -count=1 -timeout 60m $(PKGS)

# Fuzz each target for FUZZTIME (the seed corpora run in `make test`).
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./pkg/packet/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./pkg/rules/

clean:
	rm -rf bin
