defmodule Corral.SoakTest do
  # Many short runs of every kind, then the books must balance: no fd leaked
  # in the VM, no zombie, no spawner growth, no cgroup directory left.
  # `make test` runs 2,000; `make bench` runs 10,000 (CORRAL_SOAK_RUNS).
  use ExUnit.Case, async: false
  import Corral.Test.OS

  @runs String.to_integer(System.get_env("CORRAL_SOAK_RUNS", "2000"))

  @tag :soak
  @tag timeout: :infinity
  test "#{@runs} mixed runs leave nothing behind" do
    Corral.cmd("true", [])
    spawner = spawner_pid()
    assert eventually(fn -> children_of(spawner) == [] end, 5000)
    before = %{vm_fds: vm_fd_count(), sp_fds: fd_count(spawner), sp_rss: rss_kb(spawner)}

    {us, _} =
      :timer.tc(fn ->
        1..@runs
        |> Task.async_stream(&one_run/1, max_concurrency: 8, ordered: false, timeout: 30_000)
        |> Enum.each(fn {:ok, :ok} -> :ok end)
      end)

    assert eventually(fn -> children_of(spawner) == [] end, 5000)
    assert spawner_pid() == spawner, "the spawner was restarted during the soak"
    # No growth. (Fewer is fine: an earlier test's child may still have
    # been finishing when the soak started.)
    assert vm_fd_count() <= before.vm_fds
    assert fd_count(spawner) <= before.sp_fds
    assert zombies() == []
    # At most the clean leaves the spawner keeps for reuse (16), all empty.
    leaves = leaf_cgroups(spawner)
    assert length(leaves) <= 16, inspect(leaves)
    assert Enum.all?(leaves, &(File.read!(Path.join(&1, "cgroup.procs")) == ""))
    growth = rss_kb(spawner) - before.sp_rss

    IO.puts(
      "\nsoak: #{@runs} runs in #{div(us, 1000)} ms; spawner RSS growth #{growth} KiB, " <>
        "VM fds #{before.vm_fds}, spawner fds #{before.sp_fds}"
    )

    assert growth < 2048, "spawner RSS grew by #{growth} KiB"
  end

  defp one_run(i) do
    case rem(i, 5) do
      0 -> {"x\n", 0} = Corral.cmd("echo", ["x"])
      1 -> {"in", 0} = Corral.cmd("cat", [], input: "in")
      2 -> {_, :timeout} = Corral.cmd("sleep", ["10"], timeout: 20)
      3 -> {:error, {:enoent, :chdir}} = :corral.cmd("true", [], cd: "/no/such/dir")
      4 -> {_, 3} = Corral.cmd("sh", ["-c", "echo err >&2; exit 3"], stderr: :discard)
    end

    :ok
  end

  # Leaf cgroups the spawner made (corral.<pid>/c*) that still exist.
  defp leaf_cgroups(spawner) do
    Path.wildcard("/sys/fs/cgroup/**/corral.#{spawner}/*")
    |> Enum.filter(&File.dir?/1)
  end
end
