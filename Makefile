# Corral: the single entry point.
#   make          build the driver, the spawner and the Erlang/Elixir code
#   make test     build and run every test (GoogleTest via ctest, also under
#                 ASan+UBSan, both also on the portable clone path; EUnit; ExUnit;
#                 rebar3; the first-use scenarios and the README's code
#                 blocks; a short fuzz run; memcheck)
#   make fuzz     fuzz the spawner's request decoding, the frame decoding and
#                 the driver's control payloads (FUZZ_SECONDS per target,
#                 default 45), then send the spawner malformed requests among
#                 valid ones
#   make memcheck the spawner's end-to-end tests under Valgrind
#   make lint     static checks: clang-format, clang-tidy, cppcheck, erlc and
#                 elixirc with warnings as errors, mix format, Dialyzer
#                 (ONLY=step,... for some of them; see scripts/lint.sh)
#   make kernels  the spawner's tests as on older kernels (docs/KERNELS.md)
#   make ctest-tsan  the threaded tests under ThreadSanitizer
#   make demo     run the tour in examples/
#   make docs     HTML API docs of the Erlang modules (edoc) in build/doc
#   make bench    side-by-side benchmarks (bench/), as a table and a chart
# These top-level targets install missing Debian packages when run as root
# (scripts/deps.sh --install). `make priv`, which `mix compile` and
# `rebar3 compile` run when Corral is a dependency, never installs anything.

SHELL := /bin/bash
comma := ,
MAKEFLAGS += --no-print-directory
JOBS ?= 2
# Recursive (=) so that they are read after `deps` has installed OTP.
ERL_ROOT = $(shell erl -noshell -eval 'io:format("~s",[code:root_dir()]),halt().')
EI_DIR = $(shell erl -noshell -eval 'io:format("~s",[code:lib_dir(erl_interface)]),halt().')
# --no-warn-unused-cli: the sanitizer build has no driver, so ERTS_INCLUDE
# goes unused there.
CMAKE_ARGS = --no-warn-unused-cli -DERL_EI_INCLUDE=$(EI_DIR)/include \
	-DERL_EI_LIB=$(EI_DIR)/lib/libei.a -DERTS_INCLUDE=$(ERL_ROOT)/usr/include
ERLC_FLAGS := -I include +debug_info +warn_unused_vars +warnings_as_errors
EUNIT_MODS := $(subst $(eval) ,$(comma),$(basename $(notdir $(wildcard test/*_tests.erl))))
FIXTURES := $(patsubst test/fixtures/%.c,test/fixtures/bin/%,$(wildcard test/fixtures/*.c))

export MIX_ENV ?= dev

.PHONY: all deps priv-deps native priv erlang elixir fixtures test ctest ctest-asan \
	ctest-portable ctest-portable-asan eunit exunit rebar3 first-use readme demo docs bench \
	bench-check format clean fuzz memcheck lint

all: native erlang elixir

# DEPS=native checks only what the driver and the spawner need; the default
# checks everything Corral's own tests use.
DEPS ?= all
deps:
	@sh scripts/deps.sh --install $(DEPS)

# The dependency build: checks g++, cmake, make and erlang-dev (never
# installs) and builds only the driver and the spawner into priv/.
priv-deps:
	@sh scripts/deps.sh native

# QUIET_BUILD: a cmake --build that prints only compiler diagnostics (and
# keeps the build's exit status).
QUIET_BUILD = set -o pipefail; cmake --build
QUIET = | { grep -v -e '^\[' -e 'Entering' -e 'Leaving' || true; }

# cmake_build TARGETS: configures build/native and builds TARGETS (all when
# empty) into priv/, printing only compiler diagnostics.
define cmake_build
	@cmake -S c_src -B build/native -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS) >/dev/null
	@$(QUIET_BUILD) build/native -j$(JOBS) $(if $(1),--target $(1)) $(QUIET)
endef

native: deps
	$(call cmake_build,)

priv: priv-deps
	$(call cmake_build,corral_drv corral_spawner)

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

# exunit includes test/readme_test.exs (the README's code blocks); demo
# runs the tour, so that `make demo` keeps working.
# ctest and ctest-asan include the portable clone path's tests (Portable.*).
# Steps that keep less than both cores busy run two or three at a time, each
# one's output printed whole when it ends: EUnit (mostly waiting on
# children), edoc and the demo; memcheck (Valgrind runs a process's threads
# one at a time) and kernels (one test process at a time). None of them
# builds anything the others use. See docs/DECISIONS.md, D168.
test: ctest ctest-asan
	@$(MAKE) -j3 --output-sync=target eunit docs demo
	@$(MAKE) exunit rebar3 first-use fuzz
	@$(MAKE) -j2 --output-sync=target memcheck kernels

ctest: native
	@cd build/native && ctest --output-on-failure -j$(JOBS) -E '^Portable\.SpawnerScaleTest\.'

ASAN_TARGETS := corral_tests corral_spawner corral_tests_portable corral_spawner_portable
define asan_build
	@cmake -S c_src -B build/asan -DCMAKE_BUILD_TYPE=Debug -DCORRAL_SANITIZE=ON $(CMAKE_ARGS) >/dev/null
	@$(QUIET_BUILD) build/asan -j$(JOBS) --target $(1) $(QUIET)
endef
ASAN_ENV := ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
# SpawnerScaleTest (3,000 spawns) runs in the plain build only: under ASan
# it takes about a minute and covers no code the other tests do not.
ctest-asan: deps
	$(call asan_build,$(ASAN_TARGETS))
	@cd build/asan && $(ASAN_ENV) ctest --output-on-failure -j$(JOBS) -E 'SpawnerScaleTest\.'

# The clone path of non-x86-64 platforms (CLONE_VFORK, libc syscall()),
# forced on this machine: the child, identity and spawner tests built again
# with CORRAL_PORTABLE_CLONE beside the rest of each build (Portable.*,
# c_src/CMakeLists.txt). ctest and ctest-asan run them too; these run only
# them, plain or under ASan+UBSan.
ctest-portable: native
	@cd build/native && ctest --output-on-failure -j$(JOBS) -R '^Portable\.'

ctest-portable-asan: deps
	$(call asan_build,corral_tests_portable corral_spawner_portable)
	@cd build/asan && $(ASAN_ENV) ctest --output-on-failure -j$(JOBS) -R '^Portable\.'

eunit: erlang fixtures
	@mkdir -p build/eunit
	@erlc $(ERLC_FLAGS) -o build/eunit test/*_tests.erl
	@erl -noshell -pa ebin -pa build/eunit -eval \
		'case eunit:test([$(EUNIT_MODS)], [verbose]) of ok -> halt(0); _ -> halt(1) end.'

# Colour codes only on a terminal, never in CI logs (ExUnit already leaves
# them out when its output is not a terminal).
exunit: native fixtures
	@MIX_ENV=test mix test $(if $(CI),--no-color)

# The build an Erlang-only project gets: rebar3 compile (whose pre-hook runs
# make priv), then the EUnit suite through rebar3. rebar3 builds in
# _build_rebar3 (rebar.config), apart from Mix's _build.
rebar3: fixtures
	@sh scripts/deps.sh --install all rebar3
	@REBAR_COLOR=none rebar3 compile
	@REBAR_COLOR=none rebar3 eunit

# libFuzzer targets, built with clang apart from the main build (c_src/fuzz).
# A crash, a leak or a failed check stops the run: the input is left in
# build/fuzz/crashes/TARGET/. The corpus grows in build/fuzz/corpus/TARGET,
# seeded from c_src/fuzz/corpus/TARGET.
# 30 s per target, the three side by side, to keep the whole CI run near
# 15 minutes (docs/DECISIONS.md, D101 and D148); FUZZ_SECONDS=60 for the
# issue's longer run.
FUZZ_SECONDS ?= 30
FUZZ_TARGETS := spawn_spec frame control
fuzz: native
	@sh c_src/fuzz/deps.sh
	@CC=clang CXX=clang++ cmake -S c_src/fuzz -B build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		$(CMAKE_ARGS) >/dev/null
	@$(QUIET_BUILD) build/fuzz -j$(JOBS) $(QUIET)
	@# The targets run side by side: each fuzzes for FUZZ_SECONDS, the whole
	@# run takes about one target's time.
	@pids=""; for t in $(FUZZ_TARGETS); do \
		mkdir -p build/fuzz/corpus/$$t build/fuzz/crashes/$$t; \
		build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 \
			-print_final_stats=1 -artifact_prefix=build/fuzz/crashes/$$t/ \
			build/fuzz/corpus/$$t c_src/fuzz/corpus/$$t > build/fuzz/$$t.log 2>&1 & \
		pids="$$pids $$!"; \
	done; \
	fail=0; set -- $(FUZZ_TARGETS); for p in $$pids; do t=$$1; shift; \
		if wait $$p; then \
			grep -E '^#[0-9]+[[:space:]]+DONE' build/fuzz/$$t.log | tail -1 | sed "s/^/fuzz_$$t: /"; \
		else grep -v '^"' build/fuzz/$$t.log | tail -60; echo "fuzz_$$t: FAILED"; fail=1; fi; \
	done; exit $$fail
	@build/fuzz/malformed_requests priv/corral_spawner build/fuzz/spawner.log \
		c_src/fuzz/corpus/spawn_spec c_src/fuzz/corpus/frame build/fuzz/corpus/spawn_spec

memcheck: native
	@sh scripts/deps.sh --install all valgrind
	@bash c_src/fuzz/memcheck.sh build/native/corral_tests build/memcheck

# --- older kernels, failing calls, threads (c_src/faults, docs/KERNELS.md) ---
# kernels: the spawner's tests again once per newer kernel feature taken
# away (corral_deny's seccomp ENOSYS or no cgroup2 mount; corral_inject.so
# hiding cgroup.kill), then an ExUnit subset on an "old kernel" and without
# cgroup v2. Logs in build/kernels/.
# ctest-tsan: the tests where threads meet (frames on every scheduler
# thread) and the spawner's end-to-end tests under ThreadSanitizer, the
# spawner on the portable clone path. Not the tests that start children in
# the test process: TSan's clone interceptor treats a CLONE_VM child as a
# fork, and the child's after-fork state lands in our memory and silences
# it. Not part of `make test`: see docs/DECISIONS.md, D99.
.PHONY: kernels ctest-tsan
kernels: native fixtures
	@bash c_src/faults/kernels.sh build/native build/kernels
TSAN_TESTS := '^(Threads\.Frames|Frame\.|Control\.|DriverLifecycle\.|Options\.|SpawnerTest\.)'
ctest-tsan: deps
	@cmake -S c_src -B build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCORRAL_TSAN=ON \
		-DCORRAL_PORTABLE_CLONE=ON $(CMAKE_ARGS) >/dev/null
	@$(QUIET_BUILD) build/tsan -j$(JOBS) --target corral_tests corral_spawner $(QUIET)
	@cd build/tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
		ctest --output-on-failure -j$(JOBS) -R $(TSAN_TESTS)

# Every ```elixir and ```erlang block of README.md, run as written (also
# part of exunit).
readme: native
	@MIX_ENV=test mix test $(if $(CI),--no-color) test/readme_test.exs

# A fresh copy of the repository used as a dependency: Mix (path dependency;
# dev, prod and as a non-root user; mix release) and rebar3 (git dependency).
first-use: deps
	@sh scripts/deps.sh --install all rebar3 git
	@bash test/first_use/run.sh

demo: native
	@mix run examples/tour.exs

EDOC := try edoc:application(corral, ".", [{dir, "build/doc"}, {preprocess, true}]) of ok -> halt(0) \
	catch C:R -> io:format(standard_error, "edoc: ~p:~p~n", [C, R]), halt(1) end.
docs:
	@sh scripts/deps.sh --install none erlang-edoc
	@mkdir -p build/doc
	@erl -noshell -eval '$(EDOC)'
	@echo "corral: API docs in build/doc/index.html"

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

# Every finding is a line FILE:LINE[:COL]: TOOL: message; then one line per
# step, "lint: STEP: ok" or FAILED. Needs no build: CMake is only configured
# (build/lint) for its compile_commands.json.
lint: deps
	@sh scripts/deps.sh --install all clang clang-tidy cppcheck erlang-dialyzer
	@CMAKE_ARGS='$(CMAKE_ARGS)' ERLC_FLAGS='$(ERLC_FLAGS)' JOBS=$(JOBS) \
		bash scripts/lint.sh $(subst $(comma), ,$(ONLY))

format:
	@clang-format -i c_src/*/*.cpp c_src/*/*.h c_src/*/*.c
	@mix format

clean:
	@rm -rf build ebin priv _build _build_rebar3 test/fixtures/bin
