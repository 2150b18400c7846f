# Corral: the single entry point.
#   make          build the driver, the spawner and the Erlang/Elixir code
#   make test     build and run every test (GoogleTest via ctest, also under
#                 ASan+UBSan; EUnit; ExUnit; a short fuzz run; memcheck)
#   make fuzz     fuzz the spawner's request decoding and the frame decoding
#                 (FUZZ_SECONDS per target, default 60), then send the
#                 spawner malformed requests among valid ones
#   make memcheck the spawner's end-to-end tests under Valgrind
#   make demo     run the tour in examples/
#   make bench    side-by-side benchmarks (bench/), as a table and a chart
# Missing Debian packages are installed when run as root (scripts/deps.sh).

SHELL := /bin/bash
comma := ,
MAKEFLAGS += --no-print-directory
JOBS ?= 2
# Recursive (=) so that they are read after `deps` has installed OTP.
ERL_ROOT = $(shell erl -noshell -eval 'io:format("~s",[code:root_dir()]),halt().')
EI_DIR = $(shell erl -noshell -eval 'io:format("~s",[code:lib_dir(erl_interface)]),halt().')
CMAKE_ARGS = -DERL_EI_INCLUDE=$(EI_DIR)/include -DERL_EI_LIB=$(EI_DIR)/lib/libei.a \
	-DERTS_INCLUDE=$(ERL_ROOT)/usr/include
ERLC_FLAGS := -I include +debug_info +warn_unused_vars +warnings_as_errors
EUNIT_MODS := $(subst $(eval) ,$(comma),$(basename $(notdir $(wildcard test/*_tests.erl))))
FIXTURES := $(patsubst test/fixtures/%.c,test/fixtures/bin/%,$(wildcard test/fixtures/*.c))

export MIX_ENV ?= dev

.PHONY: all deps native erlang elixir fixtures test ctest ctest-asan ctest-portable \
	ctest-portable-asan eunit exunit rebar3 demo bench bench-check format clean fuzz memcheck

all: native erlang elixir

# DEPS=native checks only what the driver and the spawner need (the rebar3
# pre-hook of an Erlang-only project); the default checks everything.
DEPS ?= all
deps:
	@sh scripts/deps.sh $(DEPS)

native: deps
	@cmake -S c_src -B build/native -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS) >/dev/null
	@cmake --build build/native -j$(JOBS) | grep -v -e '^\[' -e 'Entering' -e 'Leaving' || true

erlang: native
	@mkdir -p ebin
	@erlc $(ERLC_FLAGS) -o ebin src/*.erl
	@sed -e "s/{modules, \[\]}/{modules, [$$(ls src/*.erl | xargs -n1 basename | sed 's/\.erl$$//' | paste -sd, -)]}/" \
		src/corral.app.src > ebin/corral.app

elixir: native
	@mix compile

fixtures: deps
	@mkdir -p test/fixtures/bin
	@for f in test/fixtures/*.c; do [ -e "$$f" ] || continue; \
		cc -O1 -Wall -Wextra -o test/fixtures/bin/$$(basename $$f .c) $$f || exit 1; done

test: ctest ctest-asan ctest-portable ctest-portable-asan eunit exunit rebar3 fuzz memcheck

ctest: native
	@cd build/native && ctest --output-on-failure -j$(JOBS)

ctest-asan: deps
	@cmake --no-warn-unused-cli -S c_src -B build/asan -DCMAKE_BUILD_TYPE=Debug -DCORRAL_SANITIZE=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build build/asan -j$(JOBS) --target corral_tests corral_spawner
	@cd build/asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --output-on-failure -j$(JOBS)

# The clone path of non-x86-64 platforms (CLONE_VFORK, libc syscall()),
# forced on this machine: the child and spawner tests, plain and under
# ASan+UBSan. Only the test binary and the spawner are built.
PORTABLE_TESTS := '^(Child|Launch|SpawnerTest)\.'
ctest-portable: deps
	@cmake --no-warn-unused-cli -S c_src -B build/portable -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCORRAL_PORTABLE_CLONE=ON \
		$(CMAKE_ARGS) >/dev/null
	@cmake --build build/portable -j$(JOBS) --target corral_tests corral_spawner
	@cd build/portable && ctest --output-on-failure -j$(JOBS) -R $(PORTABLE_TESTS)

ctest-portable-asan: deps
	@cmake --no-warn-unused-cli -S c_src -B build/portable-asan -DCMAKE_BUILD_TYPE=Debug -DCORRAL_SANITIZE=ON \
		-DCORRAL_PORTABLE_CLONE=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build build/portable-asan -j$(JOBS) --target corral_tests corral_spawner
	@cd build/portable-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --output-on-failure -j$(JOBS) -R $(PORTABLE_TESTS)

eunit: erlang fixtures
	@mkdir -p build/eunit
	@erlc $(ERLC_FLAGS) -o build/eunit test/*_tests.erl
	@erl -noshell -pa ebin -pa build/eunit -eval \
		'case eunit:test([$(EUNIT_MODS)], [verbose]) of ok -> halt(0); _ -> halt(1) end.'

exunit: native fixtures
	@MIX_ENV=test mix test

# The build an Erlang-only project gets: rebar3 compile (whose pre-hook runs
# make native), then the EUnit suite through rebar3.
rebar3: fixtures
	@sh scripts/deps.sh all rebar3
	@REBAR_COLOR=none rebar3 compile
	@REBAR_COLOR=none rebar3 eunit

# libFuzzer targets, built with clang apart from the main build (c_src/fuzz).
# A crash, a leak or a failed check stops the run: the input is left in
# build/fuzz/crashes/TARGET/. The corpus grows in build/fuzz/corpus/TARGET,
# seeded from c_src/fuzz/corpus/TARGET.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := spawn_spec frame
fuzz: native
	@sh c_src/fuzz/deps.sh
	@CC=clang CXX=clang++ cmake -S c_src/fuzz -B build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo --no-warn-unused-cli \
		$(CMAKE_ARGS) >/dev/null
	@cmake --build build/fuzz -j$(JOBS) | grep -v -e '^\[' -e 'Entering' -e 'Leaving' || true
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p build/fuzz/corpus/$$t build/fuzz/crashes/$$t; \
		build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 \
			-print_final_stats=1 -artifact_prefix=build/fuzz/crashes/$$t/ \
			build/fuzz/corpus/$$t c_src/fuzz/corpus/$$t > build/fuzz/$$t.log 2>&1 \
			|| { grep -v '^"' build/fuzz/$$t.log | tail -60; echo "fuzz_$$t: FAILED"; exit 1; }; \
		grep -E '^#[0-9]+[[:space:]]+DONE' build/fuzz/$$t.log | tail -1 | sed "s/^/fuzz_$$t: /"; \
	done
	@build/fuzz/malformed_requests priv/corral_spawner build/fuzz/spawner.log \
		c_src/fuzz/corpus/spawn_spec c_src/fuzz/corpus/frame build/fuzz/corpus/spawn_spec

memcheck: native
	@sh scripts/deps.sh all valgrind
	@bash c_src/fuzz/memcheck.sh build/native/corral_tests build/memcheck

demo: native
	@mix run examples/tour.exs

# make bench [ONLY=name,...] [QUICK=1]: one VM runs every scenario (bench/run.exs)
# and writes bench/results/results.md and results.svg. 10,000 children at
# one fd each: raise the fd limit (root may raise the hard one).
bench: native fixtures
	@sh bench/deps.sh
	@ulimit -n 65536 2>/dev/null || ulimit -n $$(ulimit -Hn); \
		CORRAL_BENCH_ONLY=$(ONLY) CORRAL_BENCH_QUICK=$(QUICK) MIX_ENV=prod mix run bench/run.exs

# The harness's own checks (made-up scenarios, no timing).
bench-check: native
	@sh bench/deps.sh
	@mix run bench/harness_test.exs

format:
	@clang-format -i c_src/*/*.cpp c_src/*/*.h
	@mix format

clean:
	@rm -rf build ebin priv _build test/fixtures/bin
