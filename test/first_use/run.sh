#!/usr/bin/env bash
# First use of Corral as someone else's dependency, each scenario from its
# own fresh copy of the repository (the files git tracks, so no build
# output): the very first command in the user's project must work.
#
#   mix, path dependency: `mix run` first, then `mix release` and the
#     release's `eval`: MIX_ENV=dev as we are, and MIX_ENV=prod as a non-root
#     user (nobody, when we are root)
#   rebar3, git dependency (file:// URL): `rebar3 compile`, then the code runs
#     from an `erl` started on the build; `rebar3 release`, and the release
#     run in the foreground
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
  # Nothing of the caller's make, Mix or rebar3 settings leaks in.
  local env=(env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MIX_BUILD_PATH -u MIX_BUILD_ROOT
    -u MIX_DEPS_PATH -u MIX_EXS -u ERL_LIBS -u REBAR_BASE_DIR -u MIX_ENV
    PATH="$fakebin" HOME="$work/home-$user" MIX_HOME="$work/home-$user/mix"
    HEX_HOME="$work/home-$user/hex" HEX_OFFLINE=1 REBAR_COLOR=none CI=true "$@")
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

mix_dev() { mix_scenario self dev; }
# prod and non-root together: each scenario costs a C++ build, and the whole
# run must stay within a few minutes.
mix_prod_nonroot() { mix_scenario "$nonroot" prod; }

rebar3_git() {
  local dir="$work/rebar3"
  fresh_copy "$dir/corral"
  (cd "$dir/corral" && git init -q -b main && git add -A &&
    git -c user.name=t -c user.email=t@t commit -qm copy)
  mkdir -p "$dir/app/src"
  cat >"$dir/app/rebar.config" <<EOF
{deps, [{corral, {git, "file://$dir/corral", {branch, "main"}}}]}.
{relx, [{release, {scratch, "0.1.0"}, [scratch]}, {dev_mode, false}, {include_erts, false}]}.
EOF
  cat >"$dir/app/src/scratch.app.src" <<'EOF'
{application, scratch, [{description, "scratch"}, {vsn, "0.1.0"},
                        {applications, [kernel, stdlib, corral]}]}.
EOF
  cd "$dir/app"
  as_user self rebar3 compile
  local eval='io:format("~p~n", [corral:cmd("echo", ["hi"])]), halt().'
  as_user self erl -noshell -pa _build/default/lib/*/ebin -eval "$eval" | tee run.out
  expect_hi run.out '{<<"hi\n">>,0}'
  as_user self rebar3 release
  as_user self _build/default/rel/scratch/bin/scratch foreground -eval "$eval" | tee rel.out
  expect_hi rel.out '{<<"hi\n">>,0}'
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

# As root, the non-root scenario runs as nobody; otherwise as we are.
if [ "$(id -u)" = 0 ]; then nonroot=nobody; else nonroot=self; fi
me=$(id -un)
scenario "as $me, cmake missing: the build stops with the install command, installs nothing" missing_cmake
scenario "mix path dependency, MIX_ENV=dev, as $me: mix run, mix release, eval" mix_dev
scenario "mix path dependency, MIX_ENV=prod, as ${nonroot/self/$me}: mix run, mix release, eval" mix_prod_nonroot
scenario "rebar3 git dependency, as $me: rebar3 compile, erl, rebar3 release, foreground" rebar3_git
exit $failed
