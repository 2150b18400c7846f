defmodule Corral.CgroupV1Test do
  # cgget/cgset by v2 name where the controller is a cgroup v1 hierarchy
  # (this CI host's memory and cpu): each value is checked against the raw
  # v1 file it was translated to or from (c_src/common/cgroup_table.h).
  use ExUnit.Case, async: false

  @mib 1024 * 1024

  # The child's v1 leaf that has `file`.
  defp v1_file(port, file) do
    {:ok, %{v1: leaves}} = :corral.cgroup_dirs(port)
    assert [leaf | _] = for(d <- leaves, File.exists?(Path.join(d, file)), do: d)
    Path.join(leaf, file)
  end

  defp raw(path), do: path |> File.read!() |> String.trim()

  @tag :cgroup_v1_memory
  test "memory.max and memory.low read and write memory.limit_in_bytes and the soft limit" do
    {:ok, port, _} = :corral.spawn("sleep", ["30"], cgroup: %{memory_max: 64 * @mib})
    limit = v1_file(port, "memory.limit_in_bytes")
    assert raw(limit) == "#{64 * @mib}"
    assert {:ok, "#{64 * @mib}\n"} == :corral.cgget(port, "memory.max")

    assert :ok = :corral.cgset(port, "memory.max", "32M")
    assert raw(limit) == "#{32 * @mib}"
    assert {:ok, "#{32 * @mib}\n"} == :corral.cgget(port, "memory.max")

    # v1 has no "max": -1 is written and a number near 2^63 read back.
    assert :ok = :corral.cgset(port, "memory.max", "max")
    assert String.to_integer(raw(limit)) > 4_000_000_000_000_000_000
    assert {:ok, "max\n"} = :corral.cgget(port, "memory.max")

    assert :ok = :corral.cgset(port, "memory.low", 4 * @mib)
    assert raw(v1_file(port, "memory.soft_limit_in_bytes")) == "#{4 * @mib}"
    assert {:ok, "#{4 * @mib}\n"} == :corral.cgget(port, "memory.low")

    # The v1 name is still read as it is.
    assert {:ok, "9223372036854" <> _} = :corral.cgget(port, "memory.limit_in_bytes")

    assert {:error, {:bad_cgroup_value, "memory.max", "lots"}} =
             :corral.cgset(port, "memory.max", "lots")

    assert {:error, {:no_v1_equivalent, "memory.high"}} = :corral.cgget(port, "memory.high")
    assert {:error, {:no_v1_equivalent, "memory.high"}} = :corral.cgset(port, "memory.high", "1M")
    assert {:error, {:read_only, "memory.current"}} = :corral.cgset(port, "memory.current", 1)
    assert {:error, {:enoent, "nosuch.file"}} = :corral.cgget(port, "nosuch.file")
    assert {:error, {:bad_cgroup_file, "../memory.max"}} = :corral.cgget(port, "../memory.max")
    {:ok, %{cgroup: cg}} = :corral.stats(port)
    assert {:ok, current} = :corral.cgget(port, "memory.current")
    assert is_integer(cg["memory.current"]) and String.to_integer(String.trim(current)) > 0
    assert {:exit_signal, 15} = :corral.stop(port)
  end

  @tag :cgroup_v1_memory
  test "memory.swap.max is memory.memsw.limit_in_bytes less the memory limit" do
    {:ok, port, _} = :corral.spawn("sleep", ["30"], cgroup: %{memory_max: 64 * @mib})
    {:ok, %{v1: leaves}} = :corral.cgroup_dirs(port)

    case for d <- leaves, File.exists?(Path.join(d, "memory.memsw.limit_in_bytes")), do: d do
      [leaf | _] ->
        assert :ok = :corral.cgset(port, "memory.swap.max", "16M")
        assert raw(Path.join(leaf, "memory.memsw.limit_in_bytes")) == "#{80 * @mib}"
        assert {:ok, "#{16 * @mib}\n"} == :corral.cgget(port, "memory.swap.max")
        assert :ok = :corral.cgset(port, "memory.swap.max", "max")
        assert {:ok, "max\n"} = :corral.cgget(port, "memory.swap.max")

      [] ->
        # Swap accounting is off (no memsw files): the name is not there.
        IO.puts("memory.swap.max: this kernel has no memsw files; checking the error only")
        assert {:error, {:enoent, "memory.swap.max"}} = :corral.cgget(port, "memory.swap.max")
    end

    assert {:exit_signal, 15} = :corral.stop(port)
  end

  @tag :cgroup_v1_cpu
  test "cpu.max and cpu.weight read and write the CFS quota, period and shares" do
    {:ok, port, _} =
      :corral.spawn("sleep", ["30"], cgroup: %{cpu_max: {10_000, 100_000}, cpu_weight: 50})

    quota = v1_file(port, "cpu.cfs_quota_us")
    shares = v1_file(port, "cpu.shares")
    assert raw(quota) == "10000" and raw(shares) == "512"
    assert {:ok, "10000 100000\n"} = :corral.cgget(port, "cpu.max")
    assert {:ok, "50\n"} = :corral.cgget(port, "cpu.weight")

    assert :ok = :corral.cgset(port, "cpu.max", "max")
    assert raw(quota) == "-1"
    assert {:ok, "max 100000\n"} = :corral.cgget(port, "cpu.max")
    assert :ok = :corral.cgset(port, "cpu.max", "20000 50000")
    assert raw(quota) == "20000" and raw(v1_file(port, "cpu.cfs_period_us")) == "50000"
    assert :ok = :corral.cgset(port, "cpu.weight", 200)
    assert raw(shares) == "2048"
    assert {:ok, "200\n"} = :corral.cgget(port, "cpu.weight")

    assert {:error, {:bad_cgroup_value, "cpu.weight", 0}} = :corral.cgset(port, "cpu.weight", 0)
    assert :ok = :corral.cgset(port, "cpu.max.burst", 1000)
    assert raw(v1_file(port, "cpu.cfs_burst_us")) == "1000"
    assert {:ok, "1000\n"} = :corral.cgget(port, "cpu.max.burst")
    # v1's cpu.stat counts in ns (throttled_time); stats give v2's us, and
    # add them to a v2 leaf's cpu.stat where the child has one.
    assert raw(v1_file(port, "cpu.stat")) =~ "throttled_time"
    {:ok, %{cgroup: %{"cpu.stat" => stat}}} = :corral.stats(port)
    assert is_integer(stat["throttled_usec"]) and not Map.has_key?(stat, "throttled_time")
    assert {:exit_signal, 15} = :corral.stop(port)
  end
end
