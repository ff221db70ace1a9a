GO ?= go
BIN := bin/postern
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build run test vet fmt-check bench fuzz clean

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/postern

# Runs Postern with the default settings: ./postern-data, SMTP with
# STARTTLS on 127.0.0.1:2525. A new data directory is initialised and its
# tokens printed once.
run: build
	./$(BIN) serve

test: fmt-check vet
	$(GO) test -race -count=1 -timeout 8m ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Accepted messages per second over loopback with AUTH and durable commits.
bench:
	$(GO) test -run '^$$' -bench 'BenchmarkAccept' -benchtime 5s ./smtpd/

# Runs each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
FUZZ_TARGETS := smtpd:FuzzIntake smtpd:FuzzSMTPSession smtpd:FuzzValidAddress \
	relay:FuzzClassifyReply api:FuzzDecodeJSON api:FuzzDKIMRecord
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "== $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) ./$$pkg/; \
	done

clean:
	rm -rf bin
