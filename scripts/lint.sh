#!/usr/bin/env bash
# `make lint`: every static check, each finding on a line of its own as
#   FILE:LINE[:COL]: TOOL: message
# then one "lint: STEP: ok|FAILED" line per step. All steps run even when
# one fails; the exit status is non-zero if any failed. The steps run side
# by side in three lanes (tidy | cppcheck, erlang | elixir, dialyzer, whose
# PLT is built first), each with its findings kept until all are done and
# then printed in step order: most of a cold run is clang-tidy and the
# single-threaded PLT build, which can overlap.
#
#   scripts/lint.sh [STEP...]     (make lint ONLY=tidy,dialyzer)
#
# Steps:
#   format     clang-format --dry-run -Werror on c_src; mix format --check-formatted
#   tidy       clang-tidy (.clang-tidy) on every c_src file of the CMake
#              compile_commands.json, plus c_src/fuzz; a file that passed
#              is not checked again until it, a header under c_src, the
#              compile flags or .clang-tidy change (build/lint/tidy/)
#   cppcheck   cppcheck on the same files (its own cache, build/lint/cppcheck)
#   erlang     erlc with the Makefile's flags (+warnings_as_errors) on src/
#   elixir     mix compile.elixir --force --warnings-as-errors, in build/lint/mix
#   dialyzer   Dialyzer on the Erlang and Elixir beams of the elixir step,
#              against a PLT (OTP's erts, kernel, stdlib; Elixir's elixir,
#              logger) built once in build/lint
#
# CMAKE_ARGS (from the Makefile) locates erl_interface and ERTS's headers.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=build/lint
mkdir -p "$out"
# clang-tidy and cppcheck take one file per core (at least JOBS).
cores=$(nproc 2>/dev/null || echo 2)
JOBS=$((${JOBS:-0} > cores ? JOBS : cores))
steps=${*:-format tidy cppcheck erlang elixir dialyzer}
failed=""

# Findings name files relative to the repository.
rel() { sed -e "s|$root/||g"; }

configure() { # the compile databases, configured only (nothing is built)
  # Again when a CMakeLists.txt or the protocol header changes, or a file is
  # added to c_src/test (globbed) or c_src/fuzz (the directories' mtimes).
  local stamp=$out/configured
  if [ -f "$stamp" ] && [ -z "$(find c_src/CMakeLists.txt c_src/fuzz/CMakeLists.txt c_src/protocol.cmake \
    include/corral_protocol.hrl c_src/test c_src/fuzz -maxdepth 0 -newer "$stamp")" ]; then
    return 0
  fi
  # shellcheck disable=SC2086
  # Without the Portable.* targets: they compile child.cpp and three tests
  # again with one define, and checking each file once is what lint promises.
  cmake -S c_src -B "$out/c" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
    -DCORRAL_PORTABLE_TESTS=OFF ${CMAKE_ARGS:-} >"$out/cmake.log" 2>&1 &&
    # shellcheck disable=SC2086
    CC=clang CXX=clang++ cmake -S c_src/fuzz -B "$out/fuzz" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
      ${CMAKE_ARGS:-} >>"$out/cmake.log" 2>&1 || { cat "$out/cmake.log"; return 1; }
  touch "$stamp"
}

# The C++ files each database compiles (the fuzz one: only c_src/fuzz's own).
db_files() { # DB [FILTER]
  grep -o '"file": *"[^"]*"' "$1/compile_commands.json" | sed 's/.*"\([^"]*\)"$/\1/' |
    grep -e "${2:-.}" | sort -u
}

# valgrind_clone.c is in no CMake build (c_src/fuzz/memcheck.sh compiles it):
# its flags are given here.
C_ONLY=c_src/fuzz/valgrind_clone.c
C_ONLY_FLAGS="-std=gnu11 -O1 -Wall -Wextra"

step_format() {
  local ok=0 log
  clang-format --dry-run -Werror c_src/*/*.cpp c_src/*/*.h c_src/*/*.c >"$out/clang-format.log" 2>&1 ||
    ok=1
  grep -E '^[^ ]+:[0-9]+:[0-9]+: (error|warning):' "$out/clang-format.log" |
    sed -E 's/: (error|warning): /: clang-format: /' | rel
  if ! log=$(mix format --check-formatted 2>&1); then
    ok=1
    sed -n 's/^  *\* \(.*\)/\1: mix format: not formatted (run mix format)/p' <<<"$log"
  fi
  return $ok
}

tidy_one() { # DB FILE: prints the findings, caches a pass
  local db=$1 f=$2 key
  key=$( { echo "$TIDY_SALT"; cat "$f"; } | sha256sum | cut -c1-32)
  [ -f "$out/tidy/$key" ] && return 0
  local log
  if [ "$db" = - ]; then
    log=$(clang-tidy --quiet "$f" -- $C_ONLY_FLAGS 2>&1)
  elif [[ $f == */c_src/test/* ]]; then
    # shellcheck disable=SC2086
    log=$(clang-tidy --quiet -p "$db" $TEST_ANALYZER "$f" 2>&1)
  else
    log=$(clang-tidy --quiet -p "$db" "$f" 2>&1)
  fi
  local rc=$?
  if [ $rc -eq 0 ] && ! grep -q 'warning:\|error:' <<<"$log"; then
    touch "$out/tidy/$key"
    return 0
  fi
  # The finding lines, prefixed with the tool; notes and code excerpts follow
  # each so that the path to an analyzer finding stays readable. One write,
  # so that the two files checked at once do not interleave.
  log=$(grep -v '^[0-9]* warnings\? \(and [0-9]* errors\? \)\?generated\.$' <<<"$log" |
    grep -v '^Suppressed \|^Use -header-filter\|^Error while processing' |
    sed -E 's/^([^ :]+:[0-9]+:[0-9]+): (warning|error): /\1: clang-tidy: /; s/,-warnings-as-errors\]$/]/' |
    rel)
  printf '%s\n' "$log"
  return 1
}
export -f tidy_one rel
# The tests' TEST bodies (loops that poll, many assertions) run the static
# analyzer up to its path budget: 8 of spawner_test.cpp's take 2-6 s each,
# most of clang-tidy's time. On c_src/test the analyzer runs in its shallow
# mode (smaller budgets); every other check, and the full analyzer on the
# code the tests exercise, stay as they are (docs/DECISIONS.md, D166).
TEST_ANALYZER="--extra-arg=-Xclang --extra-arg=-analyzer-config --extra-arg=-Xclang --extra-arg=mode=shallow"
export out root C_ONLY_FLAGS TEST_ANALYZER

step_tidy() {
  configure || return 1
  mkdir -p "$out/tidy"
  # Anything a file's result depends on besides its own text: the checks,
  # the flags, every header under c_src (a header change rechecks every
  # file, which is simpler than tracking includes and still fast enough).
  TIDY_SALT=$( (clang-tidy --version; echo "$TEST_ANALYZER"; cat .clang-tidy "$out/c/compile_commands.json" "$out/fuzz/compile_commands.json" \
    "$out/c/generated/corral_protocol.h" $(find c_src -name '*.h' | sort)) | sha256sum)
  export TIDY_SALT
  # Largest files first, so that no long file starts last and runs alone.
  {
    db_files "$out/c" | sed "s|^|$out/c |"
    db_files "$out/fuzz" "/c_src/fuzz/" | sed "s|^|$out/fuzz |"
    echo "- $root/$C_ONLY"
  } | while read -r db f; do echo "$(wc -c <"$f") $db $f"; done | sort -rn | cut -d' ' -f2- |
    xargs -P "$JOBS" -L1 bash -c 'tidy_one "$0" "$1"' >"$out/tidy.log"
  local rc=$?
  # A header's finding shows once per file including it: once is enough.
  awk '/: clang-tidy: / { if (seen[$0]++) { skip = 1; next } skip = 0 } !skip' "$out/tidy.log"
  return $rc
}

step_cppcheck() {
  configure || return 1
  mkdir -p "$out/cppcheck/c" "$out/cppcheck/fuzz" "$out/cppcheck/c_only"
  # Suppressions: c_src/.cppcheck-suppressions (each with its reason), or
  # inline, `// cppcheck-suppress id ; reason`.
  local common=(--enable=warning,performance,portability,style --inline-suppr --quiet
    --error-exitcode=1 --std=c++20 --library=googletest --library=posix --library=gnu
    --suppressions-list=c_src/.cppcheck-suppressions -j "$JOBS"
    "--template={file}:{line}:{column}: cppcheck: {severity}: {message} [{id}]")
  local rc=0
  cppcheck "${common[@]}" --project="$out/c/compile_commands.json" \
    --cppcheck-build-dir="$out/cppcheck/c" 2>&1 | rel || rc=1
  # c_src/fuzz's own files (its database also holds frame.cpp and options.cpp).
  cppcheck "${common[@]}" -Ic_src/common -Ic_src/spawner c_src/fuzz/*.cpp \
    --cppcheck-build-dir="$out/cppcheck/fuzz" 2>&1 | rel || rc=1
  cppcheck "${common[@]/--std=c++20/--std=c11}" --language=c "$C_ONLY" \
    --cppcheck-build-dir="$out/cppcheck/c_only" 2>&1 | rel || rc=1
  return $rc
}

ERLC_FLAGS=${ERLC_FLAGS:--I include +debug_info +warn_unused_vars +warnings_as_errors}
step_erlang() {
  mkdir -p "$out/ebin"
  # shellcheck disable=SC2086
  erlc $ERLC_FLAGS -o "$out/ebin" src/*.erl 2>&1 | sed -E 's/^([^ :]+:[0-9]+(:[0-9]+)?): /\1: erlc: /'
}

# The beams of src/ and lib/ in build/lint/mix (a build path of its own, so
# that the dev build is left alone), the Erlang ones first: the Elixir
# compiler checks the calls into them. FORCE: compile lib/ again even if it
# did not change.
# `mix compile.erlang` and `mix compile.elixir` exit 0 even when they fail
# (only `mix compile` turns their error into a status, and it would also run
# `make priv`): any diagnostic or failure message counts as a failure.
mix_compile() { # [--force]
  MIX_BUILD_PATH=$root/$out/mix mix compile.erlang >"$out/erlang.log" 2>&1
  if [ $? -ne 0 ] || grep -qE '^[^ ]+:[0-9]+(:[0-9]+)?: |^\*\* ' "$out/erlang.log"; then
    rel <"$out/erlang.log"
    return 1
  fi
  MIX_BUILD_PATH=$root/$out/mix mix compile.elixir "$@" --warnings-as-errors >"$out/elixir.log" 2>&1 &&
    ! grep -qE '^warning: |^\*\* |^Compilation failed' "$out/elixir.log"
}

step_elixir() {
  # Forced: Elixir 1.14 does not report again the warnings of a file it does
  # not recompile.
  mix_compile --force
  local rc=$?
  # "warning: ..." then "  lib/x.ex:12: Mod.fun/1": one line each.
  # A warning may name several locations, one a line, up to a blank line.
  awk '/^warning: / { w = $0; next }
       w != "" && /^  [^ ]+:[0-9]+/ { l = $0; sub(/^ +/, "", l); split(l, a, ": "); print a[1] ": elixirc: " w; next }
       /^$/ { w = "" }
       /^\*\* |error/ { print }' "$out/elixir.log" | rel
  [ $rc -eq 0 ] || grep -q . "$out/elixir.log" || echo "mix compile.elixir failed ($rc)"
  return $rc
}

# The PLT, built once (named after the OTP and Elixir versions: an upgrade
# builds a new one). Sets exlib and plt.
ensure_plt() {
  local otp
  exlib=$(elixir -e 'IO.write(:code.lib_dir(:elixir) |> Path.dirname())') || return 1
  otp=$(erl -noshell -eval 'io:format("~s-~s",[erlang:system_info(otp_release),erlang:system_info(version)]),halt().')
  plt="$out/dialyzer-otp$otp-elixir$(elixir -e 'IO.write(System.version())').plt"
  if [ ! -f "$plt" ]; then
    echo "dialyzer: building $plt (once; a few minutes)"
    rm -f "$out"/dialyzer-*.plt
    dialyzer --build_plt --output_plt "$plt.tmp" --apps erts kernel stdlib \
      -pa "$exlib/elixir/ebin" -r "$exlib/elixir/ebin" "$exlib/logger/ebin" >"$out/plt.log" 2>&1
    # Exit status 2 is "warnings found" in OTP's own code: the PLT is fine.
    [ $? -le 2 ] && mv "$plt.tmp" "$plt" || { cat "$out/plt.log"; return 1; }
  fi
}

step_dialyzer() {
  local exlib plt
  ensure_plt || return 1
  # Up to date with the sources, whether or not the elixir step ran.
  mix_compile || { echo "dialyzer: the code does not compile (see the elixir step)"; return 1; }
  dialyzer --plt "$plt" --fullpath --no_check_plt -pa "$exlib/elixir/ebin" \
    -Wunmatched_returns -Werror_handling -Wunknown \
    "$out"/mix/lib/corral/ebin/*.beam >"$out/dialyzer.log" 2>&1
  local rc=$?
  # A warning may run over several lines; unknown functions and types are
  # listed apart, "  mod:fun/1 (file:line)": one line each.
  awk '/^Unknown (functions|types):/ { what = tolower($2); sub(/:$/, "", what); next }
       what != "" && /^  [^ ]+ \(.*\)$/ {
         loc = $2; gsub(/[()]/, "", loc); print loc ": unknown " substr(what, 1, length(what) - 1) " " $1; next }
       /^[^ ]+:[0-9]+(:[0-9]+)?: / { if (w != "") print w; what = ""; w = $0; next }
       /^    +[^ ]/ && w != "" { line = $0; sub(/^ +/, "", line); w = w " " line; next }
       { if (w != "") print w; w = "" }
       END { if (w != "") print w }' "$out/dialyzer.log" |
    sed -E 's/^([^ ]+:[0-9]+(:[0-9]+)?): /\1: dialyzer: /; s/  +/ /g' | rel
  [ $rc -eq 1 ] && cat "$out/dialyzer.log"
  return $rc
}

steps=${steps//,/ }
for s in $steps; do
  case $s in
    format | tidy | cppcheck | erlang | elixir | dialyzer) ;;
    *) echo "lint: unknown step $s (format tidy cppcheck erlang elixir dialyzer)" >&2; exit 2 ;;
  esac
done
wanted() { [[ " $steps " == *" $1 "* ]]; }

# run STEP: its findings into $out/STEP.findings, "STATUS SECONDS" into
# $out/STEP.status.
run() {
  local start=$SECONDS
  "step_$1" >"$out/$1.findings" 2>&1
  echo "$? $((SECONDS - start))" >"$out/$1.status"
}

for s in $steps; do rm -f "$out/$s.findings" "$out/$s.status"; done
# Both C steps read the compile databases: made once, before they start.
if wanted tidy || wanted cppcheck; then configure >"$out/configure.out" 2>&1; fi
lanes=()
{ for s in format tidy; do wanted $s && run $s; done; } &
lanes+=($!)
{ for s in cppcheck erlang; do wanted $s && run $s; done; } &
lanes+=($!)
{
  if wanted dialyzer; then (
    exlib="" plt=""
    ensure_plt >"$out/plt.out" 2>&1
  ); fi
  for s in elixir dialyzer; do wanted $s && run $s; done
} &
lanes+=($!)
wait "${lanes[@]}"

for s in format tidy cppcheck erlang elixir dialyzer; do
  wanted $s || continue
  [ -f "$out/$s.findings" ] && cat "$out/$s.findings"
  read -r rc secs <"$out/$s.status" 2>/dev/null || { rc=1 secs=0; }
  if [ "$rc" = 0 ]; then
    echo "lint: $s: ok (${secs}s)"
  else
    echo "lint: $s: FAILED (${secs}s)"
    failed="$failed $s"
  fi
done
[ -z "$failed" ] || { echo "lint: failed:$failed (fix them; see docs/DECISIONS.md, D84-D88)"; exit 1; }
