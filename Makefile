# weir — build, run and test.
#
#   make run    build and start weir all-in-one on its embedded defaults
#   make test   run the tests of every module in go.work

GO       ?= go
BIN      := bin/weir
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X main.version=$(VERSION) -X main.revision=$(REVISION)
# Modules listed in go.work; each is tested on its own.
MODULES  := .
# -race costs 5-10x; the suite still fits well inside CI's budget.
TESTFLAGS ?= -race -timeout 20m

.PHONY: all build run test vet fmt bench clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./services/weir

run: build
	./$(BIN) all

test: vet
	@set -e; for m in $(MODULES); do \
		echo "== go test $$m"; \
		(cd $$m && $(GO) test $(TESTFLAGS) ./...); \
	done

vet:
	@set -e; test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo 'gofmt: files above need formatting'; exit 1; }
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) vet ./...); done

fmt:
	gofmt -w $$(git ls-files '*.go')

# Benchmarks of the hot paths; see docs/performance.md for figures.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/... ./services/...

clean:
	rm -rf bin data
