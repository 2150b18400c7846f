defmodule Corral.CgroupTest do
  # Limits proven on the real kernel: on this CI host the controllers are
  # cgroup v1 hierarchies; on a pure v2 host they are the delegated v2 ones.
  # Not async: one test counts leaves, and they all load the machine a little.
  use ExUnit.Case, async: false
  import Corral.Test.OS

  @mib 1024 * 1024

  # Where each controller's hierarchy is mounted (v1), and the v2 mount.
  defp mounts do
    for line <- String.split(File.read!("/proc/self/mountinfo"), "\n", trim: true),
        [fields, fs] = String.split(line, " - ", parts: 2),
        point = Enum.at(String.split(fields), 4),
        entry <- mount_entries(String.split(fs), point),
        do: entry
  end

  defp mount_entries(["cgroup2" | _], point), do: [{"", point}]

  defp mount_entries(["cgroup", _, opts], point),
    do: for(c <- String.split(opts, ","), c not in ["rw", "ro"], do: {c, point})

  defp mount_entries(_, _), do: []

  # The directories of the groups `pid` is in, v1 by controller, v2 as "".
  defp groups_of(pid) do
    m = Map.new(mounts())

    for line <- String.split(File.read!("/proc/#{pid}/cgroup"), "\n", trim: true),
        [_, ctrls, path] = String.split(line, ":", parts: 3),
        c <- if(ctrls == "", do: [""], else: String.split(ctrls, ",")),
        Map.has_key?(m, c),
        into: %{},
        do: {c, m[c] <> path}
  end

  # The leaves under `spawner`'s bases in every hierarchy (its v2 pool
  # leaves c<N> aside: they are kept for reuse by design).
  defp configured_leaves(spawner) do
    for {_, dir} <- groups_of(spawner),
        base = Path.join(dir, "corral.#{spawner}"),
        {:ok, names} <- [File.ls(base)],
        name <- names,
        File.dir?(Path.join(base, name)),
        not String.match?(name, ~r/^c\d+$/),
        do: Path.join(base, name)
  end

  defp bases(spawner, dirs),
    do: for(dir <- dirs, base = Path.join(dir, "corral.#{spawner}"), File.exists?(base), do: base)

  defp cpu_seconds(pid) do
    [_, after_comm] = String.split(File.read!("/proc/#{pid}/stat"), ") ", parts: 2)
    fields = String.split(after_comm)
    # utime and stime: fields 14 and 15 of stat, 12 and 13 after the comm.
    ticks = String.to_integer(Enum.at(fields, 11)) + String.to_integer(Enum.at(fields, 12))
    ticks / 100
  end

  defp read_line(port, acc \\ "") do
    if String.contains?(acc, "\n") do
      acc
    else
      receive do
        {^port, {:data, :stdout, bin}} ->
          :corral.ack(port, byte_size(bin))
          read_line(port, acc <> bin)
      after
        20_000 -> flunk("no line, got #{inspect(acc)}")
      end
    end
  end

  describe "memory_max" do
    @tag :cgroup_memory
    test "a hog is OOM-killed, and the terminal message says so" do
      hog = "my $x = 'x' x (256 * 1024 * 1024); print length($x)"
      {:ok, port} = :corral.open("perl", ["-e", hog], cgroup: %{memory_max: 64 * @mib})
      assert {:exit_signal, 9, :oom_kill} = :corral.await_terminal(port, 30_000)
      assert {"", 137} = Corral.cmd("perl", ["-e", hog], cgroup: %{memory_max: 64 * @mib})
    end

    @tag :cgroup_memory
    test "a program within its limit ends as usual, with the limit set on its group" do
      {:ok, port, pid} = :corral.spawn("sleep", ["30"], cgroup: %{memory_max: 64 * @mib})
      dir = groups_of(pid)["memory"] || groups_of(pid)[""]
      limit = File.read!(Path.join(dir, "memory.limit_in_bytes")) |> String.trim()
      assert limit == "#{64 * @mib}"
      assert {:exit_signal, 15} = :corral.stop(port)
    end
  end

  describe "pids_max" do
    @tag :cgroup_pids
    test "a fork bomb is held at the limit and the machine stays responsive" do
      # Bounded: at most 200 forks, each a sleeper that the stop kills.
      bomb = """
      $| = 1; my $n = 0;
      for (1..200) { my $p = fork; last unless defined $p; if (!$p) { sleep 60; exit 0 } $n++ }
      print "$n\\n"; sleep 60
      """

      {:ok, port, pid} = :corral.spawn("perl", ["-e", bomb], cgroup: %{pids_max: 50})
      forked = read_line(port) |> String.trim() |> String.to_integer()
      # The leader counts too: 49 more at most.
      assert forked in 10..49, "forked #{forked}"
      assert {"ok\n", 0} = Corral.cmd("echo", ["ok"])
      dir = groups_of(pid)["pids"]
      procs = File.read!(Path.join(dir, "cgroup.procs")) |> String.split() |> length()
      assert procs <= 50
      sleepers = children_of(pid)
      assert length(sleepers) == forked
      assert {:exit_signal, 15} = :corral.stop(port)
      refute Enum.any?(sleepers, &alive?/1)
    end
  end

  describe "cpu_max" do
    @tag :cgroup_cpu
    test "{10_000, 100_000} holds a busy loop near 10% of a CPU" do
      {:ok, port, pid} =
        :corral.spawn("perl", ["-e", "1 while 1"], cgroup: %{cpu_max: {10_000, 100_000}})

      t0 = cpu_seconds(pid)
      Process.sleep(2000)
      used = cpu_seconds(pid) - t0
      :corral.stop(port, 5000)
      # The quota caps it at 0.2 s; less when the machine is busy. Without
      # the limit the loop takes what a core gives it: 2 s on an idle one,
      # 0.65 s measured on the shared CI machine.
      assert used > 0.02 and used < 0.4, "used #{used} s of CPU in 2 s"
    end
  end

  describe "leaves" do
    @tag :cgroup_pids
    @tag timeout: 300_000
    test "none remains after 1,000 runs or an owner crash" do
      for _ <- 1..1000, do: {"", 0} = Corral.cmd("true", [], cgroup: %{pids_max: 10})
      spawner = spawner_pid()
      assert configured_leaves(spawner) == []

      parent = self()

      owner =
        spawn(fn ->
          {:ok, _port, pid} = :corral.spawn("sleep", ["60"], cgroup: %{pids_max: 10})
          send(parent, {:pid, pid})
          receive do: (:crash -> exit(:crash))
        end)

      assert_receive {:pid, pid}, 5000
      assert [_ | _] = configured_leaves(spawner)
      send(owner, :crash)
      assert eventually(fn -> not alive?(pid) and configured_leaves(spawner) == [] end, 8000)
    end

    @tag :cgroup_pids
    test "none remains after the VM is SIGKILLed" do
      ebin = :code.which(:corral) |> Path.dirname()

      script = """
      {ok, P, Pid} = corral:spawn("sleep", ["60"], [{cgroup, \#{pids_max => 10}}]),
      io:format("~b~n", [Pid]),
      receive after infinity -> ok end.
      """

      {:ok, vm} = :corral.open("erl", ["-noshell", "-pa", ebin, "-eval", script], [])
      {:ok, vm_pid} = :corral.os_pid(vm)
      child = read_line(vm) |> String.trim() |> String.to_integer()

      [spawner] =
        for p <- children_of(vm_pid),
            String.contains?(File.read!("/proc/#{p}/cmdline"), "corral_spawner"),
            do: p

      dirs = Map.values(groups_of(vm_pid))
      assert [_ | _] = bases(spawner, dirs)

      System.cmd("kill", ["-9", "#{vm_pid}"])
      assert eventually(fn -> not alive?(child) and bases(spawner, dirs) == [] end, 5000)
      assert {:exit_signal, 9} = :corral.await_terminal(vm, 5000)
    end
  end

  describe "statistics, cgget and cgset" do
    @tag :cgroup_memory
    test "a port's stats carry its groups' figures, keyed by v2 file names" do
      {:ok, port, _} = :corral.spawn("sleep", ["30"], cgroup: %{memory_max: 64 * @mib})
      {:ok, %{cgroup: cg}} = :corral.stats(port)
      assert is_integer(cg["memory.current"]) and cg["memory.current"] > 0
      assert is_integer(cg["memory.peak"])
      assert %{"oom_kill" => 0} = cg["memory.events"]
      assert {:ok, limit} = :corral.cgget(port, "memory.max") |> v2_or_v1(port)
      assert String.trim(limit) in ["#{64 * @mib}"]
      assert {:error, {:bad_cgroup_file, "../memory.max"}} = :corral.cgget(port, "../memory.max")
      assert {:error, {:bad_cgroup_file, "a/b"}} = :corral.cgset(port, "a/b", "1")
      assert {:error, {:enoent, "nosuch.file"}} = :corral.cgget(port, "nosuch.file")
      assert {:exit_signal, 15} = :corral.stop(port)
    end

    @tag :cgroup_pids
    test "cgset changes a running child's limit; Corral.Daemon has the same" do
      {:ok, d} = Corral.Daemon.start_link("sleep", ["30"], cgroup: %{pids_max: 20})
      assert Corral.Daemon.cgroup_config(d) == %{pids_max: 20}
      assert is_binary(Corral.Daemon.cgroup_path(d))
      assert {:ok, "20\n"} = Corral.Daemon.cgget(d, "pids.max")
      assert :ok = Corral.Daemon.cgset(d, "pids.max", 30)
      assert {:ok, "30\n"} = Corral.Daemon.cgget(d, "pids.max")
      assert %{cgroup: %{"pids.current" => 1}} = Corral.Daemon.statistics(d)
      GenServer.stop(d)
    end
  end

  # memory.max on v2, memory.limit_in_bytes on v1.
  defp v2_or_v1({:error, {:enoent, _}}, port), do: :corral.cgget(port, "memory.limit_in_bytes")
  defp v2_or_v1(found, _), do: found

  describe "errors" do
    test "a bad value names the key and the value" do
      assert {:error, {:bad_option, {:cgroup, :memory_max}, :lots}} =
               :corral.open("true", [], cgroup: %{memory_max: :lots})

      assert {:error, {:bad_option, {:cgroup, :cpu_max}, {1, 2}}} =
               :corral.open("true", [], cgroup: %{cpu_max: {1, 2}})

      assert {:error, {:unknown_option, {:cgroup, :memory_maximum}}} =
               :corral.open("true", [], cgroup: %{memory_maximum: 1})

      assert {:error, {:bad_option, {:cgroup, "../memory.max"}, "../memory.max"}} =
               :corral.open("true", [], cgroup: %{"../memory.max" => 1})

      assert {:error, {:bad_option, :cgroup_base, "a/../b"}} =
               :corral.open("true", [], cgroup_base: "a/../b")
    end

    @tag :root
    test "a controller no hierarchy offers fails before exec, naming it" do
      assert {:error, {:enotsup, {:cgroup, why}}} =
               :corral.cmd("true", [], cgroup: %{"nosuch.max" => 1})

      assert why =~ "nosuch"
    end

    @tag :root
    test "a cgroup_base that does not exist fails before exec, naming it" do
      assert {:error, {:enoent, {:cgroup, why}}} =
               :corral.cmd("true", [], cgroup_base: "corral-no-such-base")

      assert_raise Corral.Error, ~r/enoent .* at cgroup: cgroup_base .* does not exist/, fn ->
        Corral.cmd("true", [], cgroup_base: "corral-no-such-base")
      end

      assert why =~ "corral-no-such-base does not exist"
    end
  end
end
