# rmemcached: `make run` starts the server with memcached's defaults on
# 127.0.0.1:11211; `make test` installs what the tests need and runs them all.

CARGO   ?= cargo
VENV    := .venv
PY      := $(VENV)/bin/python
BIN     := target/release/rmemcached
PORT    ?= 11211
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# memcached (and rmemcached) refuse to run as root without -u.
RUN_AS  := $(shell [ "$$(id -u)" = 0 ] && echo "-u nobody")
APT_PKGS := memcached libmemcached-tools python3-venv valgrind strace \
            sasl2-bin libsasl2-modules libsasl2-modules-db

.PHONY: all build run test deps deps-apt deps-py deps-bench test-rust test-unsafe test-py test-py-uring bench bench-profile bench-memory lint fmt clean

all: build

# Both I/O backends are built in; epoll serves unless `-o io_uring`.
FEATURES := --features io-uring

build:
	$(CARGO) build --release $(FEATURES)

run: build
	./$(BIN) -l 127.0.0.1 -p $(PORT) $(RUN_AS) $(ARGS)

# System packages: the real memcached for differential tests, memccapable,
# and a user named `memcache` as the seed deployment expects.  Debian's
# memcached does SASL (-S) through Cyrus SASL only: sasl2-bin's saslpasswd2
# makes the sasldb file, libsasl2-modules(-db) hold the PLAIN and sasldb
# plugins (tests/py/test_bmemcached.py).
deps-apt:
	@missing=""; for p in $(APT_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
	@# The package starts a memcached service on 11211; tests start their own.
	@-$(SUDO) service memcached stop >/dev/null 2>&1 || true
	@getent passwd memcache >/dev/null || $(SUDO) useradd --system --no-create-home --shell /usr/sbin/nologin memcache

deps-py: $(VENV)/.installed

$(VENV)/.installed: tests/py/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/py/requirements.txt
	touch $@

deps: deps-apt deps-py

# matplotlib for bench/run.py's plot, kept out of the test requirements: the
# suite does not need it, and bench/run.py only skips the PNG without it.
deps-bench: $(VENV)/.bench-installed

$(VENV)/.bench-installed: $(VENV)/.installed bench/requirements.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check -r bench/requirements.txt
	touch $@

test: deps build test-rust test-unsafe test-py test-py-uring

test-rust:
	$(CARGO) test --release $(FEATURES)

# The unit tests of the arena and the rest of the library under memcheck;
# the server itself runs under valgrind in tests/py/test_valgrind.py.
test-unsafe:
	@bin=$$($(CARGO) test --release $(FEATURES) --lib --no-run --message-format=json 2>/dev/null \
	  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | head -n1); \
	valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
	  "$$bin" --test-threads=1 --skip out_of_chunk_access_panics

test-py:
	RMEMCACHED_BIN=$(CURDIR)/$(BIN) $(PY) -m pytest tests/py -q -p no:cacheprovider

# The same suites with every rmemcached on the io_uring backend.  The
# benchmark smoke test is left out (it starts its own servers with the
# default backend), and so is valgrind (it lacks io_uring's system calls).
test-py-uring:
	RMEMCACHED_BIN=$(CURDIR)/scripts/rmemcached-uring $(PY) -m pytest tests/py -q -p no:cacheprovider \
	  --deselect tests/py/test_bench.py --deselect tests/py/test_valgrind.py

# Throughput, latency and CPU per request, rmemcached beside memcached -t 1
# (bench/README.md).  The load comes from memtier_benchmark when MEMTIER=path
# is given or it is on PATH, else from target/release/rmc-loadgen.
# ARGS=--quick for a smoke run; BENCH_SECONDS / BENCH_ROUNDS set the length.
# Not part of `make test`.
bench: build deps-apt deps-bench
	$(if $(MEMTIER),MEMTIER=$(MEMTIER)) $(PY) bench/run.py $(ARGS)

# Instructions (callgrind) and system calls (strace) per request, both
# backends beside memcached -t 1; N=requests (default 100000).
bench-profile: build deps-apt
	bash bench/per-request.sh $(N)

# Items stored, RSS per item and hit ratios, rmemcached beside memcached.
bench-memory: build deps
	$(PY) bench/memory.py $(ARGS)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --all-targets $(FEATURES) -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(VENV)
