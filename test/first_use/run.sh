#!/usr/bin/env bash
# First use of Corral as someone else's dependency, each scenario from its
# own fresh copy of the repository (the files git knows, so no build
# output): the very first command in the user's project must work.
#
#   mix, path dependency: `mix run` first, again without make and cmake on
#     the PATH (nothing to rebuild), then `mix release` and the release's
#     `eval`: MIX_ENV=dev as we are, and MIX_ENV=prod as a non-root user
#     (nobody, when we are root)
#   rebar3, git dependency (file:// URL): `rebar3 compile`, then the code runs
#     from an `erl` started on the build; `rebar3 release`, and the release
#     run in the foreground
#   a dependency build that lacks cmake stops with the install command
#
# Every build runs with a PATH that has no clang-format and whose apt-get,
# apt, dpkg and sudo only record that they were called: a dependency build
# needs neither the test tools nor an installer, and must never try to
# install. The scenarios run side by side (each is mostly a C++ build); one
# line each is printed, in order, and a failed one's log.
#
#   test/first_use/run.sh [SCENARIO_FUNCTION...]   (default: all of them)
#   CORRAL_FIRST_USE_KEEP=1 keeps the scratch projects and logs for a look.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/corral-first-use.XXXXXX)
if [ -n "${CORRAL_FIRST_USE_KEEP:-}" ]; then
  echo "first use: working in $work"
else
  trap 'rm -rf "$work"' EXIT
fi
chmod 755 "$work"
expected='{"hi\n", 0}'
snippet='IO.inspect(Corral.cmd("echo", ["hi"]))'
if [ "$(id -u)" = 0 ]; then nonroot=nobody; else nonroot=self; fi
me=$(id -un)

# restricted_path DIR HIDDEN...: DIR gets every command of the usual
# directories but clang-format and HIDDEN, and installers that record their
# calls in DIR/installer-calls.
restricted_path() {
  local bin=$1 name dir
  shift
  mkdir -p "$bin"
  for dir in /usr/local/bin /usr/bin /bin; do
    # An earlier directory wins, as in PATH; ln complains about the rest.
    ln -s -t "$bin" "$dir"/* 2>/dev/null || true
  done
  rm -f "$bin"/clang-format*
  for name in "$@"; do rm -f "$bin/$name"; done
  for name in apt apt-get dpkg sudo; do
    rm -f "$bin/$name"
    printf '#!/bin/sh\necho "%s $*" >>%s/installer-calls\nexit 1\n' "$name" "$bin" >"$bin/$name"
    chmod 755 "$bin/$name"
  done
  : >"$bin/installer-calls"
  chmod 666 "$bin/installer-calls"
}

# fresh_copy DIR: the files git knows (tracked, and new ones it does not
# ignore), as they are in the work tree now.
fresh_copy() {
  mkdir -p "$1"
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard |
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

# as_user USER CMD...: CMD with the scenario's restricted PATH ($bin), as
# USER (`self`: as we are), with a home of its own and nothing of the
# caller's make, Mix or rebar3 settings.
as_user() {
  local user=$1
  shift
  local home="$work/home-$user-$BASHPID"
  mkdir -p "$home"
  local env=(env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MIX_BUILD_PATH -u MIX_BUILD_ROOT
    -u MIX_DEPS_PATH -u MIX_EXS -u ERL_LIBS -u REBAR_BASE_DIR -u MIX_ENV
    PATH="$bin" HOME="$home" MIX_HOME="$home/mix" HEX_HOME="$home/hex" HEX_OFFLINE=1
    REBAR_COLOR=none CI=true "$@")
  if [ "$user" = self ]; then
    "${env[@]}"
  else
    chown -R "$user" "$home"
    setpriv --reuid="$user" --regid="$(id -g "$user")" --clear-groups "${env[@]}"
  fi
}

# expect_last FILE LINE: FILE's last line is LINE.
expect_last() {
  local last
  last=$(tail -n 1 "$1")
  [ "$last" = "$2" ] || { echo "expected $2 as the last line, got: $last"; return 1; }
}

# mix_scenario USER MIX_ENV: path dependency; mix run first, then a release.
mix_scenario() {
  local user=$1 env=$2 dir="$work/mix-$1-$2"
  bin=$dir/bin
  restricted_path "$bin"
  fresh_copy "$dir/corral"
  scratch_mix "$dir/app" "$dir/corral"
  [ "$user" = self ] || chown -R "$user" "$dir/corral" "$dir/app"
  cd "$dir/app"
  as_user "$user" MIX_ENV="$env" mix run -e "$snippet" | tee run.out
  expect_last run.out "$expected"
  # Nothing changed: the next command runs neither make nor cmake.
  local full=$bin
  bin=$dir/bin-nomake
  restricted_path "$bin" make cmake
  as_user "$user" MIX_ENV="$env" mix run -e "$snippet" | tee rerun.out
  expect_last rerun.out "$expected"
  bin=$full
  as_user "$user" MIX_ENV="$env" mix release --quiet
  as_user "$user" "_build/$env/rel/scratch/bin/scratch" eval "$snippet" | tee eval.out
  expect_last eval.out "$expected"
}

mix_dev() { mix_scenario self dev; }
# prod and non-root together: each scenario costs a C++ build, and the whole
# run must stay within a few minutes.
mix_prod_nonroot() { mix_scenario "$nonroot" prod; }

rebar3_git() {
  local dir="$work/rebar3"
  bin=$dir/bin
  restricted_path "$bin"
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
  expect_last run.out '{<<"hi\n">>,0}'
  as_user self rebar3 release
  as_user self _build/default/rel/scratch/bin/scratch foreground -eval "$eval" | tee rel.out
  expect_last rel.out '{<<"hi\n">>,0}'
}

# cmake missing: the build stops, names the package and the command, and
# installs nothing (as root too, where an install would be possible).
missing_cmake() {
  local dir="$work/missing" status=0
  bin=$dir/bin
  restricted_path "$bin" cmake
  fresh_copy "$dir/corral"
  scratch_mix "$dir/app" "$dir/corral"
  cd "$dir/app"
  as_user self mix compile >compile.out 2>&1 || status=$?
  cat compile.out
  [ "$status" != 0 ] || { echo "mix compile succeeded without cmake"; return 1; }
  grep -F 'corral: missing Debian packages: cmake' compile.out
  grep -F "apt-get install -y --no-install-recommends cmake" compile.out
}

# run_scenario FUNCTION: FUNCTION, then no installer may have been called.
run_scenario() {
  "$1"
  if [ -s "$bin/installer-calls" ]; then
    echo "an installer was called:"
    cat "$bin/installer-calls"
    return 1
  fi
}

names=()
fns=()
scenario() { # scenario NAME FUNCTION, unless other functions were named
  [ $# -eq 2 ] || return 1
  if [ ${#only[@]} -gt 0 ] && [[ " ${only[*]} " != *" $2 "* ]]; then return 0; fi
  names+=("$1")
  fns+=("$2")
}
only=("$@")
scenario "as $me, cmake missing: the build stops with the install command, installs nothing" \
  missing_cmake
scenario "mix path dependency, MIX_ENV=dev, as $me: mix run (twice), mix release, eval" mix_dev
scenario "mix path dependency, MIX_ENV=prod, as ${nonroot/self/$me}: mix run (twice), mix release, eval" \
  mix_prod_nonroot
scenario "rebar3 git dependency, as $me: rebar3 compile, erl, rebar3 release, foreground" \
  rebar3_git

start=$SECONDS
pids=()
for fn in "${fns[@]}"; do
  # A background job also keeps `set -e` in force inside the function (an
  # `if` around it would turn it off).
  run_scenario "$fn" >"$work/$fn.log" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!fns[@]}"; do
  fn=${fns[$i]}
  status=0
  wait "${pids[$i]}" || status=$?
  if [ "$status" = 0 ]; then
    echo "first use: ${names[$i]}: ok (done after $((SECONDS - start)) s)"
  else
    echo "first use: ${names[$i]}: FAILED; its log:"
    sed 's/^/    /' "$work/$fn.log" | tail -n 60
    failed=1
  fi
done
exit $failed
