#!/bin/sh
# Checks the tools Corral builds with. As root, installs what is missing from
# Debian's packages; otherwise prints the exact install line and fails.
set -eu

missing=""
need() { # need PACKAGE TEST...
  pkg=$1; shift
  if ! "$@" >/dev/null 2>&1; then missing="$missing $pkg"; fi
}
have() { command -v "$1"; }
erl_lib() { erl -noshell -eval "case code:lib_dir($1) of {error,_} -> halt(1); _ -> halt(0) end."; }

need g++ have g++
need cmake have cmake
need make have make
need erlang-base have erl
need erlang-dev test -f /usr/lib/erlang/usr/include/erl_driver.h
need erlang-dev sh -c 'ls /usr/lib/erlang/lib/erl_interface-*/include/ei.h'
need erlang-eunit erl_lib eunit
need elixir have elixir
need libgtest-dev test -f /usr/include/gtest/gtest.h
need clang-format have clang-format

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
