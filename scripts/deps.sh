#!/bin/sh
# Checks the tools Corral builds with: `native` for the driver and the
# spawner only, `all` (the default) for everything, plus any tools named
# after it (Debian packages that install a command of the same name). As root, installs what
# is missing from Debian's packages; otherwise prints the exact install line
# and fails.
set -eu

missing=""
need() { # need PACKAGE TEST...
  pkg=$1; shift
  if ! "$@" >/dev/null 2>&1; then missing="$missing $pkg"; fi
}
have() { command -v "$1"; }
erl_lib() { erl -noshell -eval "case code:lib_dir($1) of {error,_} -> halt(1); _ -> halt(0) end."; }

group=${1:-all}
[ $# -gt 0 ] && shift
case $group in
  native | all) ;;
  *) echo "usage: scripts/deps.sh [native|all] [TOOL...]" >&2; exit 2 ;;
esac

# What the driver and the spawner build with: all an Erlang-only project
# (rebar3) needs.
need g++ have g++
need cmake have cmake
need make have make
need erlang-base have erl
need erlang-dev test -f /usr/lib/erlang/usr/include/erl_driver.h
need erlang-dev sh -c 'ls /usr/lib/erlang/lib/erl_interface-*/include/ei.h'
if [ "$group" = all ]; then
  # The Elixir API, the tests and the formatters.
  need erlang-eunit erl_lib eunit
  need elixir have elixir
  need libgtest-dev test -f /usr/include/gtest/gtest.h
  need libboost1.74-dev test -f /usr/include/boost/process.hpp
  need clang-format have clang-format
fi
# Extra tools a make target asks for by name (make rebar3: scripts/deps.sh all rebar3).
for tool in "$@"; do need "$tool" have "$tool"; done

missing=$(printf '%s\n' $missing | sort -u | tr '\n' ' ')
if [ -z "$(printf '%s' "$missing" | tr -d ' ')" ]; then exit 0; fi

line="apt-get install -y --no-install-recommends $missing"
if [ "$(id -u)" = 0 ]; then
  echo "corral: installing missing Debian packages: $missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing
else
  echo "corral: missing packages:$missing" >&2
  echo "corral: run as root: $line" >&2
  exit 1
fi
