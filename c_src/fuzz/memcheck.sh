#!/bin/bash
# `make memcheck`: the spawner's end-to-end GoogleTests (SpawnerTest.*),
# and the in-process tests of the frame, option and cgroup-path code, with
# the test binary and every spawner it starts under Valgrind's memcheck
# (which, unlike ASan, also sees ei's uninstrumented decoders and reads of
# uninitialised memory); the programs the spawner runs (/bin/sh, /bin/echo,
# ...) are not traced. Fails on any memcheck error (invalid access, use of uninitialised
# memory, bad syscall argument, definite leak) in any of them.
#   c_src/fuzz/memcheck.sh TEST_BINARY OUT_DIR
set -uo pipefail
tests=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)

# Left out, because of what Valgrind changes, not of what they test:
# - Valgrind keeps the spawner's RLIMIT_NOFILE to itself (children get
#   the real one) and reserves fds at the top of the table, so the limits
#   these two set do not hold; and pidfd_open is ENOSYS under Valgrind
#   3.19, so there are no pidfds to give way.
# - These two run tens of children; the spawner's shutdown after request
#   EOF (SIGKILL every group, wait for the cgroups) takes longer than the
#   3 s the tests allow when the spawner runs 20-50x slower.
skip=SpawnerTest.ChildGetsTheNofileLimitTheSpawnerStartedWith
skip+=:SpawnerTest.ExitsAreFoundWhenPidfdsGiveWay
skip+=:SpawnerTest.PipelinedRequestsEachGetFdsThenTheirOwnExit
skip+=:SpawnerTest.RequestsWaitWhileTooManyChildrenAreBeforeExec

rm -rf "$out/logs"
mkdir -p "$out/logs"
cc -O1 -Wall -Wextra -shared -fPIC -o "$out/valgrind_clone.so" "$here/valgrind_clone.c" -ldl || exit 1

start=$(date +%s)
LD_PRELOAD="$out/valgrind_clone.so" valgrind --tool=memcheck \
  --trace-children=yes --trace-children-skip='/bin/*,/usr/*,/sbin/*,/nonexistent/*' \
  --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
  --log-file="$out/logs/%p.log" \
  "$tests" --gtest_filter="SpawnerTest.*:Frame.*:Options.*:ResolveCd.*:CgroupParse.*:-$skip" > "$out/tests.log" 2>&1
status=$?
elapsed=$(($(date +%s) - start))
tail -3 "$out/tests.log"

# Errors: the ERROR SUMMARY of each process that exited under Valgrind,
# and for the others (a spawner's child, which left Valgrind at its exec
# into an untraced program, or a process killed) the error reports in its
# log.
errors=0
summaries=0
for log in "$out"/logs/*.log; do
  if n=$(grep -oP '== ERROR SUMMARY: \K[0-9]+' "$log"); then
    errors=$((errors + n))
    summaries=$((summaries + 1))
  else
    errors=$((errors + $(grep -cE '^==[0-9]+== (Invalid|Conditional jump|Use of uninitialised|Syscall param|Mismatched|Source and destination|Argument .* of function|[0-9,]+ bytes in [0-9,]+ blocks are definitely)' "$log")))
  fi
done
logs=$(ls "$out"/logs | wc -l)
echo "memcheck: $errors errors in $logs processes ($summaries exited under Valgrind), ${elapsed}s"
if [ "$errors" -gt 0 ]; then
  grep -lE 'ERROR SUMMARY: [1-9]|^==[0-9]+== (Invalid|Conditional|Use of|Syscall|Mismatched|Source|Argument)' "$out"/logs/*.log | head -5 | xargs -r cat
  exit 1
fi
if [ $status -ne 0 ]; then
  cat "$out/tests.log" | grep -v '^\[       OK' | tail -40
  exit 1
fi
