#!/bin/sh
# Checks the Debian packages Corral builds with.
#
#   scripts/deps.sh [--install] GROUP [TOOL...]
#
# GROUP `none`: only the TOOLs. GROUP `native`: what the driver and the spawner need (g++, cmake, make,
# erlang-dev), i.e. all a project that depends on Corral needs. GROUP `all`:
# also Elixir, EUnit, GoogleTest and clang-format, for Corral's own tests.
# Each TOOL names a Debian package that installs a command of the same name
# (`scripts/deps.sh all rebar3`), or an OTP application packaged as
# erlang-APP (`scripts/deps.sh all erlang-edoc`), or is PACKAGE=FILE: the
# package that installs FILE (`libboost1.74-dev=/usr/include/boost/process.hpp`).
#
# Without --install nothing is ever installed: a missing package stops the
# build with the exact command to run. Only Corral's own top-level make
# targets pass --install (as root, the missing packages are then installed
# quietly and one line says which); a dependency build (`mix compile`,
# `rebar3 compile` in someone else's project) never does.
set -eu

install=no
if [ "${1:-}" = --install ]; then install=yes; shift; fi
group=${1:-native}
[ $# -gt 0 ] && shift
case $group in
  none | native | all) ;;
  *) echo "usage: scripts/deps.sh [--install] none|native|all [TOOL...]" >&2; exit 2 ;;
esac

missing=""
need() { # need PACKAGE TEST...
  pkg=$1; shift
  if ! "$@" >/dev/null 2>&1; then missing="$missing $pkg"; fi
}
have() { command -v "$1"; }
erl_eval() { erl -noshell -eval "$1" 2>/dev/null; }
erl_lib() { erl_eval "case code:lib_dir($1) of {error,_} -> halt(1); _ -> halt(0) end."; }

if [ "$group" != none ]; then
  need g++ have g++
  need cmake have cmake
  need make have make
  need erlang-base have erl
  if have erl >/dev/null 2>&1; then
    # Where this OTP keeps its headers (not always /usr/lib/erlang).
    dirs=$(erl_eval 'io:format("~s~n~s~n",[code:root_dir(),code:lib_dir(erl_interface)]),halt().' || true)
    root=$(printf '%s\n' "$dirs" | sed -n 1p)
    ei=$(printf '%s\n' "$dirs" | sed -n 2p)
    need erlang-dev test -f "$root/usr/include/erl_driver.h"
    need erlang-dev test -f "$ei/include/ei.h"
  else
    missing="$missing erlang-dev"
  fi
fi
if [ "$group" = all ]; then
  need erlang-eunit erl_lib eunit
  need elixir have elixir
  need libgtest-dev test -f /usr/include/gtest/gtest.h
  need libboost1.74-dev test -f /usr/include/boost/process.hpp
  need clang-format have clang-format
fi
for tool in "$@"; do
  case $tool in
    *=*) need "${tool%%=*}" test -f "${tool#*=}" ;;
    erlang-*) need "$tool" erl_lib "${tool#erlang-}" ;;
    *) need "$tool" have "$tool" ;;
  esac
done

missing=$(printf '%s\n' $missing | sort -u | paste -sd' ' -)
[ -z "$missing" ] && exit 0

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo "
line="${sudo}apt-get install -y --no-install-recommends $missing"
if [ "$install" = no ] || [ -n "$sudo" ]; then
  echo "corral: missing Debian packages: $missing" >&2
  echo "corral: install them with: $line" >&2
  exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
if apt-get update -qq >"$log" 2>&1 &&
  apt-get install -y -qq --no-install-recommends $missing >>"$log" 2>&1; then
  echo "corral: installed $missing"
else
  cat "$log" >&2
  echo "corral: could not install $missing (see above)" >&2
  exit 1
fi
