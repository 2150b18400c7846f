#!/bin/sh
# What `make fuzz` builds with: clang (through scripts/deps.sh) and clang's
# sanitizer and libFuzzer runtimes, which Debian ships apart from the
# compiler (libclang-rt-N-dev). As root, installs what is missing;
# otherwise prints the install line and fails.
set -eu
sh scripts/deps.sh --install all clang
runtime=$(clang++ -print-file-name=libclang_rt.fuzzer-x86_64.a)
[ -f "$runtime" ] && exit 0
pkg="libclang-rt-$(clang++ -dumpversion | cut -d. -f1)-dev"
if [ "$(id -u)" = 0 ]; then
  echo "corral: installing missing Debian packages: $pkg"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$pkg"
else
  echo "corral: missing package: $pkg (libFuzzer and the sanitizer runtimes)" >&2
  echo "corral: run as root: apt-get install -y --no-install-recommends $pkg" >&2
  exit 1
fi
