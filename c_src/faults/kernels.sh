#!/bin/bash
# make kernels: the spawner's tests again, once per newer kernel feature
# taken away (docs/KERNELS.md), then an ExUnit subset as on an old kernel
# and without cgroup v2.
#
#   kernels.sh BUILD_DIR LOG_DIR
#
# BUILD_DIR holds corral_tests, corral_deny and corral_inject.so (the plain
# build: a preloaded shim cannot go under ASan). Each run must pass and must
# show that its fallback was taken (a log line, or the shim's record), so a
# run that silently kept the feature fails.
set -uo pipefail
build=$1
logs=$2
mkdir -p "$logs"
deny="$build/corral_deny"
inject="$(cd "$build" && pwd)/corral_inject.so"
tests="$build/corral_tests"

# The suites that start children, reap them and kill their trees.
suites='SpawnerTest.*:Child.*:Launch.*:CgroupLive.*:KillTree*'
# Tests of a feature itself, which its fallback does not give (KERNELS.md's
# last column); left out of the run that takes that feature away.
feature_clone3='CgroupLive.ChildIsClonedStraightIntoTheLeaf'
feature_pidfd='SpawnerTest.ExitsAreFoundWhenPidfdsGiveWay'
feature_close_range='Launch.SharedTableChildTakesOnlyTheLowFds'
old_kernel="clone3,pidfd_open,pidfd_send_signal,close_range"

failed=0
# run NAME EVIDENCE COMMAND...: runs COMMAND into LOG_DIR/NAME.log; it must
# pass and its log (or the shim's record) must contain EVIDENCE.
run() {
  local name=$1 evidence=$2
  shift 2
  local log="$logs/$name.log" record="$logs/$name.injected"
  rm -f "$record"
  if ! CORRAL_FAULT_LOG="$record" "$@" >"$log" 2>&1; then
    tail -40 "$log"
    echo "kernels: $name: FAILED (log: $log)"
    failed=1
    return
  fi
  if [ -n "$evidence" ] && ! grep -qF -- "$evidence" "$log" "$record" 2>/dev/null; then
    echo "kernels: $name: passed, but never took the fallback ('$evidence' not seen; log: $log)"
    failed=1
    return
  fi
  echo "kernels: $name: ok"
}

gtest() {
  local name=$1 evidence=$2 exclude=$3
  shift 3
  local filter="$suites"
  [ -n "$exclude" ] && filter="$filter-$exclude"
  run "$name" "$evidence" "$@" "$tests" --gtest_filter="$filter"
}

gtest no-clone3 "clone3(CLONE_INTO_CGROUP): Function not implemented" "$feature_clone3" \
  "$deny" --syscalls clone3 --
gtest no-pidfd "" "$feature_pidfd" "$deny" --syscalls pidfd_open,pidfd_send_signal --
gtest no-close-range "" "$feature_close_range" "$deny" --syscalls close_range --
gtest no-cgroup-kill "open cgroup.kill" "" \
  env LD_PRELOAD="$inject" CORRAL_FAULT_HIDE=cgroup.kill
gtest no-cgroup-v2 "no cgroup containment" "" "$deny" --no-cgroup --
gtest old-kernel "clone3(CLONE_INTO_CGROUP): Function not implemented" \
  "$feature_clone3:$feature_pidfd:$feature_close_range" \
  env LD_PRELOAD="$inject" CORRAL_FAULT_HIDE=cgroup.kill "$deny" --syscalls "$old_kernel" --

# The VM's side: the driver starts the spawner (posix_spawn's closefrom
# without close_range) and kills trees itself when the spawner is lost.
exunit="test/corral_containment_test.exs test/corral_lost_child_test.exs"
run exunit-old-kernel "open cgroup.kill" \
  env MIX_ENV=test LD_PRELOAD="$inject" CORRAL_FAULT_HIDE=cgroup.kill \
  "$deny" --syscalls "$old_kernel" -- mix test $exunit
run exunit-no-cgroup-v2 "Excluding tests tagged :cgroup_v2" \
  env MIX_ENV=test "$deny" --no-cgroup -- mix test $exunit

exit $failed
