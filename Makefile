# weir — build, run and test.
#
#   make run    build and start weir all-in-one on its embedded defaults
#   make test   run the tests of every module in go.work
#   make stack  run broker, edge, stream and sink as separate local processes
#   make loadtest  a minute of sustained ingest against a fresh weir, checked for loss
#   make fuzz   every fuzz target for FUZZTIME each
#   make soak   the fault tests at soak length (docs/reliability.md)

GO       ?= go
BIN      := bin/weir
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X main.version=$(VERSION) -X main.revision=$(REVISION)
# Modules listed in go.work; each is tested on its own.
MODULES  := . loadtest
# -race costs 5-10x; the suite still fits well inside CI's budget.
TESTFLAGS ?= -race -timeout 20m

.PHONY: all build run test test-deps vet fmt bench clean stack stack-down loadtest fuzz soak

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./services/weir

run: build
	./$(BIN) all

# The docker-compose topology without Docker: weir broker, edge, stream and
# sink on loopback with deploy/compose/weir.yaml, state and logs under
# data/stack. Ctrl-C (or make stack-down from another terminal) stops it.
stack: build
	WEIR=$(BIN) deploy/stack/stack.sh up

stack-down:
	deploy/stack/stack.sh down

test: test-deps vet
	@set -e; for m in $(MODULES); do \
		echo "== go test $$m"; \
		(cd $$m && $(GO) test $(TESTFLAGS) ./...); \
	done

# Real peers some tests talk to, from Debian's packages: kcat (an ordinary
# Kafka client against the embedded broker), Chromium (the status page),
# Node.js and npm (DuckDB for Node runs docs/rollups.md's queries).
# Installed when missing and apt-get can run; otherwise the tests that need
# them fail and say what to install.
TEST_DEPS := kcat:kcat chromium:chromium npm:nodejs npm:npm
test-deps:
	@for d in $(TEST_DEPS); do cmd=$${d%%:*}; pkg=$${d#*:}; \
		command -v $$cmd >/dev/null && continue; \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing $$pkg for the tests"; \
			apt-get install -y --no-install-recommends $$pkg >/dev/null 2>&1 || \
			{ apt-get update >/dev/null && apt-get install -y --no-install-recommends $$pkg >/dev/null; }; \
		else echo "warning: $$cmd is missing (apt-get install $$pkg); tests that need it will fail"; fi; \
	done

vet:
	@set -e; test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo 'gofmt: files above need formatting'; exit 1; }
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) vet ./...); done

fmt:
	gofmt -w $$(git ls-files '*.go')

# Benchmarks of the hot paths; see docs/performance.md for figures.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/... ./services/...

# A minute of the default scenario against a fresh all-in-one weir on a
# temporary data directory and free ports, then the loss and counter checks
# (docs/performance.md). Extra harness flags: LOADTEST_FLAGS='-scenario max'.
# To load any other endpoint: bin/weir-loadtest -url http://host:port.
LOADTEST_FLAGS ?=
loadtest: build
	cd loadtest && $(GO) build -o ../bin/weir-loadtest ./cmd/weir-loadtest
	./bin/weir-loadtest -out bin/loadtest \
		-exec 'weir=$(CURDIR)/$(BIN) all --data-dir {dir} --http.addr {addr:http} --kafka.embedded.addr {addr:kafka}' \
		-url 'http://{addr:http}' -ready 'http://{addr:http}/-/ready' $(LOADTEST_FLAGS)

# Every go test -fuzz target of the root module, FUZZTIME each (one at a
# time: go test fuzzes one target per run). New inputs that widen coverage
# stay in Go's fuzz cache; a crasher is written to the package's
# testdata/fuzz/<Target>/ and fails the run, and then belongs in the
# repository. The last line of each run gives its executions; they are
# collected in bin/fuzz/summary.txt.
FUZZTIME ?= 10s
fuzz:
	@mkdir -p bin/fuzz; : > bin/fuzz/summary.txt; set -e; \
	for f in $$(grep -rl --include='*_test.go' '^func Fuzz' pkg services internal | sort); do \
		dir=./$$(dirname $$f); \
		for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "== $$dir $$t ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$dir > bin/fuzz/$$t.log 2>&1 || { cat bin/fuzz/$$t.log; exit 1; }; \
			line=$$(grep 'fuzz: elapsed' bin/fuzz/$$t.log | tail -1); \
			echo "$$dir $$t: $$line" | tee -a bin/fuzz/summary.txt; \
		done; \
	done

# The fault tests (internal/reliability) at soak length: minutes of load
# per scenario instead of seconds, without the race detector so the
# figures are the binary's own. Each test prints its figures and appends
# them as a JSON line to bin/soak/results.jsonl; docs/reliability.md holds
# those of the last run. SOAK='-run TestX' picks scenarios.
SOAK ?=
soak:
	@mkdir -p bin/soak; rm -f bin/soak/results.jsonl; \
	{ WEIR_SOAK=1 WEIR_SOAK_OUT=$(CURDIR)/bin/soak/results.jsonl $(GO) test -count=1 -timeout 4h -v $(SOAK) ./internal/reliability/; \
	  echo $$? > bin/soak/rc; } 2>&1 | tee bin/soak/soak.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok)|figures:'; \
	exit $$(cat bin/soak/rc)

clean:
	rm -rf bin data
