#!/bin/sh
# What `make fuzz` builds with: clang, and clang's sanitizer and libFuzzer
# runtimes, which Debian ships apart from the compiler (libclang-rt-N-dev).
set -eu
sh scripts/deps.sh --install all clang
major=$(clang++ -dumpversion | cut -d. -f1)
exec sh scripts/deps.sh --install none \
  "libclang-rt-$major-dev=$(clang++ -print-file-name=libclang_rt.fuzzer-x86_64.a)"
