#!/bin/sh
# What `make bench` needs beyond the build: gnuplot for the chart and the
# Boost headers for the C++ baseline. As root, installs what is missing from
# Debian's packages (gnuplot-nox: gnuplot without X or Qt); otherwise prints
# the install line and fails.
set -eu
missing=""
command -v gnuplot >/dev/null 2>&1 || missing="$missing gnuplot-nox"
[ -f /usr/include/boost/process.hpp ] || missing="$missing libboost1.74-dev"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "corral: installing missing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing
else
  echo "corral: missing packages:$missing" >&2
  echo "corral: run as root: apt-get install -y --no-install-recommends$missing" >&2
  exit 1
fi
