# Corral: the single entry point.
#   make          build the driver, the spawner and the Erlang/Elixir code
#   make test     build and run every test (GoogleTest via ctest, also under
#                 ASan+UBSan; EUnit; ExUnit; rebar3; the first-use scenarios
#                 and the README's code blocks)
#   make demo     run the tour in examples/
#   make docs     HTML API docs of the Erlang modules (edoc) in build/doc
#   make bench    side-by-side benchmarks (bench/)
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
ERLC_FLAGS := +debug_info +warn_unused_vars +warnings_as_errors
EUNIT_MODS := $(subst $(eval) ,$(comma),$(basename $(notdir $(wildcard test/*_tests.erl))))
FIXTURES := $(patsubst test/fixtures/%.c,test/fixtures/bin/%,$(wildcard test/fixtures/*.c))

export MIX_ENV ?= dev

.PHONY: all deps priv-deps native priv erlang elixir fixtures test ctest ctest-asan eunit exunit \
	rebar3 first-use readme demo docs bench format clean

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

# cmake_build TARGETS: configures build/native and builds TARGETS (all when
# empty) into priv/, printing only compiler diagnostics.
define cmake_build
	@cmake -S c_src -B build/native -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS) >/dev/null
	@set -o pipefail; cmake --build build/native -j$(JOBS) $(if $(1),--target $(1)) \
		| { grep -v -e '^\[' -e 'Entering' -e 'Leaving' || true; }
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

# exunit includes test/readme_test.exs (the README's code blocks).
test: ctest ctest-asan eunit exunit rebar3 docs first-use

ctest: native
	@cd build/native && ctest --output-on-failure -j$(JOBS)

ctest-asan: deps
	@cmake -S c_src -B build/asan -DCMAKE_BUILD_TYPE=Debug -DCORRAL_SANITIZE=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build build/asan -j$(JOBS) --target corral_tests corral_spawner
	@cd build/asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --output-on-failure -j$(JOBS)

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

bench: native fixtures
	@MIX_ENV=prod mix run bench/run.exs
	@MIX_ENV=prod mix run bench/stream_bench.exs
	@# 10,000 children at 4 fds each: raise the fd limit (root may raise the hard one)
	@ulimit -n 65536 2>/dev/null || ulimit -n $$(ulimit -Hn); MIX_ENV=prod mix run bench/containment_bench.exs
	@CORRAL_SOAK_RUNS=10000 MIX_ENV=test mix test --only soak test/corral_soak_test.exs

format:
	@clang-format -i c_src/*/*.cpp c_src/*/*.h
	@mix format

clean:
	@rm -rf build ebin priv _build _build_rebar3 test/fixtures/bin
