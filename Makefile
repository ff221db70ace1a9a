GO ?= go
BIN := bin/postern
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build run test vet fmt-check bench bench-compare bench-go fuzz docs screenshots clean

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/postern

# Runs Postern with the default settings: ./postern-data, SMTP with
# STARTTLS on 127.0.0.1:2525. A new data directory is initialised and its
# tokens printed once.
run: build
	./$(BIN) serve

# Every test that runs the binary runs this one build (bin/postern, as
# users run it); see internal/testutil.BuildBinary.
test: fmt-check vet build
	POSTERN_BIN=$(abspath $(BIN)) POSTERN_BIN_VERSION=$(VERSION) $(GO) test -race -count=1 -timeout 8m ./...

# The long forms: the crash test with 25 SIGKILLs instead of 3, and the
# resource-bound measurements with the real binary.
test-long: build
	POSTERN_BIN=$(abspath $(BIN)) POSTERN_BIN_VERSION=$(VERSION) POSTERN_TEST_LONG=1 $(GO) test -race -count=1 -run 'Crash|Long' -timeout 30m ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The standard scenarios against a fresh postern serve relaying to a
# postern sink: one table, and the results in BENCH_OUT (default
# bench-results.json). BENCH_MESSAGES etc. scale it: see the script.
bench: build
	POSTERN_BIN=$(BIN) GO=$(GO) internal/bench/scripts/bench.sh

# The same scenarios through Postern and through a private Postfix
# instance, with OpenDKIM as its milter for the signed end to end (both
# installed with apt-get if missing; needs root), into the same
# sink: Postern/Postfix ratios, and the results in BENCH_COMPARE_OUT
# (default bench-compare.json).
bench-compare: build
	POSTERN_BIN=$(BIN) GO=$(GO) internal/bench/scripts/compare.sh

# Go benchmarks of the intake alone: accepted messages per second over
# loopback with AUTH and durable commits.
bench-go:
	$(GO) test -run '^$$' -bench 'BenchmarkAccept' -benchtime 5s ./smtpd/

# The console's servers page as docs/console.png, taken by the browser
# test in headless Chromium against the real binary.
screenshots: build
	POSTERN_BIN=$(abspath $(BIN)) POSTERN_SCREENSHOT=$(abspath docs/console.png) $(GO) test -count=1 -run '^TestConsoleInChromium$$' ./cmd/postern/

# Runs each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
FUZZ_TARGETS := smtpd:FuzzIntake smtpd:FuzzSMTPSession smtpd:FuzzValidAddress smtpd:FuzzLineLength \
	relay:FuzzClassifyReply relay:FuzzFitLines api:FuzzDecodeJSON api:FuzzPaging internal/dkim:FuzzDKIMRecord internal/dkim:FuzzSign \
	internal/message:FuzzSplit internal/message:FuzzParseBody
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "== $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) ./$$pkg/; \
	done

# Writes docs/settings.md from the code's settings (a test checks it is
# current).
docs:
	$(GO) run ./cmd/postern settings -markdown > docs/settings.md

clean:
	rm -rf bin
