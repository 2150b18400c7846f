#!/usr/bin/env bash
# First use of Corral as someone else's dependency, each scenario from its
# own fresh copy of the repository (the files git tracks, so no build
# output): the very first command in the user's project must work.
#
#   mix, path dependency: `mix run` first, then `mix release` and the
#     release's `eval` (MIX_ENV=dev as root, MIX_ENV=prod, and as a non-root
#     user)
#   rebar3, git dependency (file:// URL): `rebar3 compile`, then the code runs
#     from an `erl` started on the build
#   a dependency build that lacks a package stops with the install command
#
# Every build runs with a PATH that has no clang-format and whose apt-get,
# apt and dpkg only record that they were called: a dependency build needs
# neither the test tools nor an installer, and must never try to install.
# Prints one line per scenario; on failure, the scenario's log.
#
#   test/first_use/run.sh [SCENARIO_FUNCTION...]   (default: all of them)
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/corral-first-use.XXXXXX)
# CORRAL_FIRST_USE_KEEP=1 keeps the scratch projects and logs for a look.
[ -n "${CORRAL_FIRST_USE_KEEP:-}" ] && echo "first use: working in $work" || trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
expected='{"hi\n", 0}'
snippet='IO.inspect(Corral.cmd("echo", ["hi"]))'

# The restricted PATH: every command of /usr/bin and /bin but the hidden ones.
fakebin=$work/bin
mkdir -p "$fakebin"
for dir in /usr/local/bin /usr/bin /bin; do
  # An earlier directory wins, as in PATH; ln complains about the rest.
  ln -s -t "$fakebin" "$dir"/* 2>/dev/null || true
done
rm -f "$fakebin"/clang-format*
for name in apt apt-get dpkg sudo; do
  rm -f "$fakebin/$name"
  printf '#!/bin/sh\necho "%s $*" >>%s/installer-calls\nexit 1\n' "$name" "$work" >"$fakebin/$name"
  chmod 755 "$fakebin/$name"
done
touch "$work/installer-calls"
chmod 666 "$work/installer-calls"

# fresh_copy DIR: the tracked files of the repository, as they are now in the
# work tree (uncommitted edits included).
fresh_copy() {
  mkdir -p "$1"
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard | \
    xargs -0 -I{} sh -c '[ -e "$1" ] && cp --parents -P "$1" "$2" || true' _ {} "$1")
}

# scratch_mix DIR CORRAL_DIR: a Mix project that depends on Corral by path.
scratch_mix() {
  mkdir -p "$1"
  cat >"$1/mix.exs" <<EOF
defmodule Scratch.MixProject do
  use Mix.Project
  def project, do: [app: :scratch, version: "0.1.0", deps: [{:corral, path: "$2"}]]
  def application, do: [extra_applications: [:logger]]
end
EOF
}

# as_user USER CMD...: CMD with the restricted PATH, as USER (or as we are).
as_user() {
  local user=$1
  shift
  local env=(env PATH="$fakebin" HOME="$work/home-$user" MIX_HOME="$work/home-$user/mix"
    HEX_HOME="$work/home-$user/hex" HEX_OFFLINE=1 REBAR_COLOR=none CI=true
    MAKEFLAGS= MAKELEVEL= "$@")
  mkdir -p "$work/home-$user"
  if [ "$user" = self ]; then
    "${env[@]}"
  else
    chown -R "$user" "$work/home-$user"
    setpriv --reuid="$user" --regid="$(id -g "$user")" --clear-groups "${env[@]}"
  fi
}

# expect_hi LOG: the last line of LOG is what Corral.cmd returned.
expect_hi() {
  local last
  last=$(tail -n 1 "$1")
  if [ "$last" != "$2" ]; then
    echo "expected $2 as the last line, got: $last" >>"$1"
    return 1
  fi
}

failed=0
only=" $* "
# scenario NAME FUNCTION: runs FUNCTION (unless other functions were named on
# the command line) with its output in a log, and prints one line.
scenario() {
  local name=$1 fn=$2 log="$work/$2.log" start=$SECONDS
  [ "$only" = "  " ] || [[ $only == *" $fn "* ]] || return 0
  : >"$work/installer-calls"
  # In the background so that `set -e` holds inside (an `if` would disable it).
  "$fn" >"$log" 2>&1 &
  if wait $! && [ ! -s "$work/installer-calls" ]; then
    echo "first use: $name: ok ($((SECONDS - start)) s)"
  else
    [ -s "$work/installer-calls" ] && { echo "installer called:"; cat "$work/installer-calls"; } >>"$log"
    echo "first use: $name: FAILED ($((SECONDS - start)) s); its log:"
    sed 's/^/    /' "$log" | tail -n 60
    failed=1
  fi
}

# mix_scenario USER MIX_ENV: path dependency; mix run first, then a release.
mix_scenario() {
  local user=$1 env=$2 dir="$work/mix-$1-$2"
  fresh_copy "$dir/corral"
  scratch_mix "$dir/app" "$dir/corral"
  [ "$user" = self ] || chown -R "$user" "$dir"
  cd "$dir/app"
  as_user "$user" MIX_ENV="$env" mix run -e "$snippet" | tee run.out
  expect_hi run.out "$expected"
  as_user "$user" MIX_ENV="$env" mix release --quiet
  as_user "$user" "_build/$env/rel/scratch/bin/scratch" eval "$snippet" | tee eval.out
  expect_hi eval.out "$expected"
}

mix_dev_root() { mix_scenario self dev; }
mix_prod_root() { mix_scenario self prod; }
mix_dev_nonroot() { mix_scenario nobody dev; }

rebar3_git() {
  local dir="$work/rebar3"
  fresh_copy "$dir/corral"
  (cd "$dir/corral" && git init -q -b main && git add -A &&
    git -c user.name=t -c user.email=t@t commit -qm copy)
  mkdir -p "$dir/app/src"
  cat >"$dir/app/rebar.config" <<EOF
{deps, [{corral, {git, "file://$dir/corral", {branch, "main"}}}]}.
EOF
  cat >"$dir/app/src/scratch.app.src" <<'EOF'
{application, scratch, [{description, "scratch"}, {vsn, "0.1.0"},
                        {applications, [kernel, stdlib, corral]}]}.
EOF
  cd "$dir/app"
  as_user self rebar3 compile
  as_user self erl -noshell -pa _build/default/lib/*/ebin \
    -eval 'io:format("~p~n", [corral:cmd("echo", ["hi"])]), halt().' | tee run.out
  expect_hi run.out '{<<"hi\n">>,0}'
}

# As root, with cmake missing: the build stops, names the package and the
# command, and installs nothing.
missing_cmake() {
  local dir="$work/missing"
  fresh_copy "$dir/corral"
  scratch_mix "$dir/app" "$dir/corral"
  rm "$fakebin/cmake"
  cd "$dir/app"
  local status=0
  as_user self mix compile >compile.out 2>&1 || status=$?
  ln -s "$(command -v cmake)" "$fakebin/cmake"
  cat compile.out
  [ "$status" != 0 ] || { echo "mix compile succeeded without cmake"; return 1; }
  grep -F 'corral: missing Debian packages: cmake' compile.out
  grep -F "apt-get install -y --no-install-recommends cmake" compile.out
}

if [ "$(id -u)" = 0 ]; then
  scenario "missing cmake, as root: stops with the install command, installs nothing" missing_cmake
  scenario "mix path dependency, MIX_ENV=dev, root: mix run, mix release, eval" mix_dev_root
  scenario "mix path dependency, MIX_ENV=prod: mix run, mix release, eval" mix_prod_root
  scenario "mix path dependency, MIX_ENV=dev, as nobody: mix run, mix release, eval" mix_dev_nonroot
else
  scenario "missing cmake: stops with the install command, installs nothing" missing_cmake
  scenario "mix path dependency, MIX_ENV=dev, as $(id -un): mix run, mix release, eval" mix_dev_root
  scenario "mix path dependency, MIX_ENV=prod, as $(id -un): mix run, mix release, eval" mix_prod_root
fi
scenario "rebar3 git dependency: rebar3 compile, then erl" rebar3_git
exit $failed
