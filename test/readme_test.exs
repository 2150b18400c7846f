defmodule Corral.ReadmeTest do
  # Every ```elixir and ```erlang block of README.md runs as written. Elixir
  # blocks are evaluated in a scratch directory; a `#=> pattern` line asserts
  # that the expression above it (since the previous `#=>`) matches pattern.
  # Erlang blocks run in a fresh `erl` on the compiled corral. Blocks under
  # another fence (```sh, ```text) are not run.
  #
  # The compatibility table's rows are checked against Corral.cmd/3 too.
  use ExUnit.Case, async: false

  @readme Path.expand("../README.md", __DIR__)
  @external_resource @readme
  @text File.read!(@readme)

  blocks =
    for [{start, _}, {lang_at, lang_len}, {code_at, code_len}] <-
          Regex.scan(~r/^```(elixir|erlang)\n(.*?)^```[ \t]*$/ms, @text, return: :index) do
      line = @text |> binary_part(0, start) |> String.split("\n") |> length()
      {binary_part(@text, lang_at, lang_len), line + 1, binary_part(@text, code_at, code_len)}
    end

  @blocks blocks

  test "README.md has Elixir and Erlang blocks to run" do
    langs = Enum.frequencies_by(@blocks, &elem(&1, 0))
    assert langs["elixir"] >= 5 and langs["erlang"] >= 2, inspect(langs)
  end

  for {lang, line, code} <- blocks do
    test "README.md:#{line} (#{lang})" do
      dir = Path.join(System.tmp_dir!(), "corral-readme-#{System.unique_integer([:positive])}")
      File.mkdir_p!(dir)
      on_exit(fn -> File.rm_rf!(dir) end)
      run(unquote(lang), unquote(code), unquote(line), dir)
    end
  end

  defp run("elixir", code, line, dir) do
    File.cd!(dir, fn -> Code.eval_string(with_checks(code), [], file: @readme, line: line) end)
  end

  defp run("erlang", code, line, dir) do
    body = code |> String.trim_trailing() |> String.trim_trailing(".")

    eval = """
    try begin
    #{body}
    end of _ -> halt(0)
    catch C:R:S -> io:format(standard_error, "~p:~p~n~p~n", [C, R, S]), halt(1)
    end.
    """

    ebin = :code.lib_dir(:corral, :ebin) |> to_string()
    opts = [cd: dir, stderr_to_stdout: true, timeout: 60_000]
    {out, status} = Corral.cmd("erl", ["-noshell", "-pa", ebin, "-eval", eval], opts)
    assert status == 0, "README.md:#{line}: the Erlang block failed (#{inspect(status)}):\n#{out}"
  end

  # `expr` then `#=> pattern` becomes a match of expr's value against pattern.
  defp with_checks(code) do
    {done, pending} =
      code
      |> String.split("\n")
      |> Enum.reduce({[], []}, fn line, {done, pending} ->
        case Regex.run(~r/^\s*#=>\s*(.+)$/, line) do
          [_, pattern] -> {[check(Enum.reverse(pending), pattern) | done], []}
          nil -> {done, [line | pending]}
        end
      end)

    Enum.reverse([Enum.join(Enum.reverse(pending), "\n") | done]) |> Enum.join("\n")
  end

  defp check(lines, pattern) do
    """
    readme_value = (
    #{Enum.join(lines, "\n")}
    )
    case readme_value do
      #{pattern} -> :ok
      readme_other ->
        raise ExUnit.AssertionError,
          message: #{inspect("README: expected #{pattern}, got ")} <> inspect(readme_other)
    end
    """
  end

  # The "Compatibility" table: every option marked supported is accepted by
  # Corral.cmd/3, every one marked "not yet supported" is refused with an
  # ArgumentError that says so (not as an unknown option).
  @samples %{
    into: [],
    cd: ".",
    env: %{"CORRAL_README" => "1"},
    arg0: "readme",
    stderr_to_stdout: true,
    parallelism: true,
    timeout: 5_000,
    delay_to_sigkill: 100,
    stdio_window: 4096,
    capture_stderr_only: true,
    # The VM's own, which need no privilege.
    uid: System.cmd("id", ["-u"]) |> elem(0) |> String.trim() |> String.to_integer(),
    gid: System.cmd("id", ["-g"]) |> elem(0) |> String.trim() |> String.to_integer(),
    cgroup: %{pids_max: 100},
    cgroup_controllers: ["pids"],
    # An existing group: the VM's own (in each hierarchy used).
    cgroup_base: ".",
    cgroup_path: "corral-readme",
    cgroup_sets: [{"pids", "pids.max", "100"}]
  }

  # cgroups need root (or a delegated tree).
  @needs_root [:cgroup, :cgroup_controllers, :cgroup_base, :cgroup_path, :cgroup_sets]

  [_, compat_section | _] = String.split(@text, ~r/^## Compatibility.*$/m)
  [compat_section | _] = String.split(compat_section, ~r/^## /m)

  @compat_rows for [_, name, status] <-
                     Regex.scan(
                       ~r/^\| `(\w+)` \|[^|\n]*\|[^|\n]*\| ([^|\n]+) \|$/m,
                       compat_section
                     ),
                   do: {String.to_atom(name), String.trim(status)}

  test "the compatibility table lists every option of System.cmd/3 and MuonTrap.cmd/3" do
    assert @compat_rows |> Keyword.keys() |> Enum.sort() == @samples |> Map.keys() |> Enum.sort()
  end

  for {name, status} <- @compat_rows do
    if name in @needs_root, do: @tag(:root)

    test "compatibility table: #{name} is #{status}" do
      name = unquote(name)
      opts = [{name, Map.fetch!(@samples, name)}]

      if unquote(status) =~ ~r/^supported/ do
        assert {_, 0} = Corral.cmd("true", [], opts)
      else
        assert unquote(status) =~ ~r/^not yet supported/
        error = assert_raise ArgumentError, fn -> Corral.cmd("true", [], opts) end
        assert error.message =~ inspect(name)
        assert error.message =~ "not supported"
        refute error.message =~ "unknown option"
      end
    end
  end
end
