defmodule Corral.CgroupEventsTest do
  # memory_events: a child's memory.events counts while it runs, proven on
  # the real kernel (on this CI host the memory controller is a v1
  # hierarchy: cgroup.event_control eventfds; on a v2 host, inotify).
  # Not async: the spawner's fd count is compared before and after.
  use ExUnit.Case, async: false
  import Corral.Test.OS
  import ExUnit.CaptureLog

  @mib 1024 * 1024
  @hog "my @a; push @a, 'x' x 1048576 while 1"

  # Every message of `port` up to its terminal message, in order (output
  # acknowledged), and the terminal message.
  defp collect(port, acc \\ []) do
    receive do
      {^port, {:data, _, bin}} ->
        :corral.ack(port, byte_size(bin))
        collect(port, acc)

      {^port, {:started, _}} ->
        collect(port, acc)

      {^port, {:memory_events, counts}} ->
        collect(port, [counts | acc])

      {^port, terminal} ->
        :corral.flush_exit(port)
        {Enum.reverse(acc), terminal}
    after
      60_000 -> flunk("no terminal message; events so far: #{inspect(Enum.reverse(acc))}")
    end
  end

  defp spawner_fds(pid), do: length(File.ls!("/proc/#{pid}/fd"))

  describe "the option" do
    test "bad values name the option" do
      mem = [cgroup: %{memory_max: 64 * @mib}]

      for bad <- [:yes, 1, [], [:bogus], [:max, "oom"], [:max | :oom]] do
        assert {:error, {:bad_option, :memory_events, ^bad}} =
                 :corral.open("true", [], mem ++ [memory_events: bad])
      end
    end

    test "without a memory cgroup it fails before anything is started" do
      for opts <- [[], [cgroup: %{pids_max: 10}], [cgroup_controllers: ["cpu"]]] do
        assert {:error, {:bad_option, :memory_events, {:no_memory_cgroup, true}}} =
                 :corral.open("true", [], opts ++ [memory_events: true])
      end

      assert {:error, {:bad_option, :memory_events, {:no_memory_cgroup, [:max]}}} =
               Corral.Process.start("true", [], memory_events: [:max])
    end

    test "entry points whose caller cannot take messages do not accept it" do
      assert {:error, {:unknown_option, :memory_events}} =
               :corral.cmd("true", [], memory_events: true)

      assert {:error, {:unknown_option, :memory_events}} =
               :corral_stream.prepare("true", [], memory_events: true)
    end

    test "false subscribes to nothing" do
      assert {:ok, %{request: request}} =
               :corral_opts.normalize("true", [], [memory_events: false], :open)

      refute Map.has_key?(request, :memory_events)
    end
  end

  describe "notices while the child runs" do
    @tag :cgroup_memory
    test "page cache pressing on the limit raises max, and the child exits normally" do
      dir = Path.join(System.tmp_dir!(), "corral_events_#{System.unique_integer([:positive])}")
      File.mkdir_p!(dir)

      try do
        # Page cache of a file on disk is reclaimable: the writer is held at
        # its limit, never OOM-killed.
        args = ["if=/dev/zero", "of=#{Path.join(dir, "f")}", "bs=1M", "count=256"]

        {:ok, port} =
          :corral.open("dd", args,
            cgroup: %{memory_max: 64 * @mib},
            memory_events: true,
            stderr: :discard
          )

        {events, terminal} = collect(port)
        assert terminal == {:exit_status, 0}
        assert Enum.any?(events, &(&1.max > 0)), "events: #{inspect(events)}"
        # Counts are cumulative, and each notice differs from the last.
        assert events == Enum.sort_by(events, & &1.max)
        assert events == Enum.dedup(events)
      after
        File.rm_rf!(dir)
      end
    end

    @tag :cgroup_memory
    test "an OOM kill is reported before the terminal message" do
      {:ok, port} =
        :corral.open("perl", ["-e", @hog], cgroup: %{memory_max: 32 * @mib}, memory_events: true)

      {events, terminal} = collect(port)
      assert {:exit_signal, 9, :oom_kill} = terminal
      assert %{oom_kill: n} = List.last(events)
      assert n >= 1
    end

    @tag :cgroup_memory
    test "a list of keys reports only those" do
      {:ok, port} =
        :corral.open("perl", ["-e", @hog],
          cgroup: %{memory_max: 32 * @mib},
          memory_events: [:oom_kill]
        )

      {events, {:exit_signal, 9, :oom_kill}} = collect(port)
      assert [%{oom_kill: n}] = events
      assert n >= 1
    end

    @tag :cgroup_memory
    test "without the option there is no notice at all" do
      {:ok, port} = :corral.open("perl", ["-e", @hog], cgroup: %{memory_max: 32 * @mib})
      assert {[], {:exit_signal, 9, :oom_kill}} = collect(port)
    end

    @tag :cgroup_memory
    test "the spawner closes the watch's fds when the child ends" do
      # A child first, so that the spawner runs and its own fds are open.
      {:ok, port} = :corral.open("true", [], [])
      collect(port)
      spawner = spawner_pid()
      before = spawner_fds(spawner)

      {:ok, port} =
        :corral.open("sleep", ["30"], cgroup: %{memory_max: 32 * @mib}, memory_events: true)

      # Running: the control socket and the watch's fds (two on v1, one on
      # v2) on top.
      assert eventually(fn -> spawner_fds(spawner) >= before + 2 end)
      assert {:exit_signal, 15} = :corral.stop(port)

      assert eventually(fn -> spawner_fds(spawner) == before end),
             "spawner fds: #{spawner_fds(spawner)}, before: #{before}"
    end
  end

  describe "Corral.Process and Corral.Daemon" do
    @tag :cgroup_memory
    test "Corral.Process forwards the notices to its owner and keeps the latest" do
      {:ok, p} =
        Corral.Process.start("perl", ["-e", @hog],
          cgroup: %{memory_max: 32 * @mib},
          memory_events: [:max, :oom_kill]
        )

      assert %{memory_events: %{}} = Corral.Process.stats(p)
      assert {:ok, 137} = Corral.Process.await_exit(p, 60_000)
      assert_received {Corral.Process, ^p, {:memory_events, %{oom_kill: n}}} when n >= 1
      assert %{memory_events: %{oom_kill: ^n, max: max}} = Corral.Process.stats(p)
      assert max > 0
      Corral.Process.stop(p)
    end

    @tag :cgroup_memory
    test "Corral.Daemon logs a warning when the limit is hit and counts in statistics/1" do
      dir = Path.join(System.tmp_dir!(), "corral_events_#{System.unique_integer([:positive])}")
      File.mkdir_p!(dir)
      script = "dd if=/dev/zero of=#{Path.join(dir, "f")} bs=1M count=256 2>/dev/null; sleep 30"

      try do
        log =
          capture_log(fn ->
            {:ok, d} =
              Corral.Daemon.start_link("sh", ["-c", script],
                cgroup: %{memory_max: 64 * @mib},
                memory_events: true,
                log_output: :info
              )

            assert eventually(
                     fn -> Map.get(Corral.Daemon.statistics(d).memory_events, :max, 0) > 0 end,
                     30_000
                   )

            Process.unlink(d)
            GenServer.stop(d)
          end)

        assert log =~ ~r/memory\.events: max \d+ \(\+\d+\)/
      after
        File.rm_rf!(dir)
      end
    end
  end
end
