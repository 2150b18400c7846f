defmodule Corral.ChaosTest do
  # Chaos: concurrent callers run random commands of every kind (fast exits,
  # floods, timeouts, process trees, setsid escapees, exec failures, streams
  # halted early, Corral.Process and Corral.Daemon) while their owners are
  # killed at random. Then nothing may be left: no child of the spawner, no
  # zombie, no fd or port in the VM, no fd or memory growth in the spawner,
  # no populated cgroup leaf, no Erlang process.
  #
  # CORRAL_CHAOS_SECONDS (default 10; `make bench` runs 60) sets how long;
  # the seed is printed, and CORRAL_CHAOS_SEED=n replays its choices (the
  # timing, and so the interleaving, is the machine's).
  use ExUnit.Case, async: false
  import Corral.Test.OS

  @seconds String.to_integer(System.get_env("CORRAL_CHAOS_SECONDS", "10"))
  @callers 8
  @fixtures Path.expand("fixtures/bin", __DIR__)

  @kinds [
    :fast_exit,
    :exit_status,
    :flood,
    :timeout,
    :tree,
    :escape,
    :exec_failure,
    :chdir_failure,
    :stream_halted,
    :stream_lines_halted,
    :ignore_term,
    :process,
    :daemon,
    :stdin
  ]

  @tag :chaos
  @tag timeout: :infinity
  test "random commands with owners killed at random leave nothing behind" do
    seed =
      case System.get_env("CORRAL_CHAOS_SEED") do
        nil -> :erlang.unique_integer([:positive]) * 7919 + System.os_time()
        s -> String.to_integer(s)
      end

    IO.puts("\nchaos: seed #{seed} (CORRAL_CHAOS_SEED=#{seed} replays it), #{@seconds} s")

    Corral.cmd("true", [])
    spawner = spawner_pid()
    assert eventually(fn -> children_of(spawner) == [] end, 5000)

    # A setsid escapee is caught by its cgroup leaf only: without cgroups
    # it outlives its run, by design (docs/ARCHITECTURE.md, Containment).
    kinds =
      if Path.wildcard("/sys/fs/cgroup/**/corral.#{spawner}") != [],
        do: @kinds,
        else:
          IO.puts("chaos: no cgroup leaves here, so no setsid escapees") && @kinds -- [:escape]

    # Daemons and Corral.Process servers whose owners are killed log it.
    # on_exit restores the level even when a caller fails, so that the
    # log-capturing tests after this one are not affected.
    level = Logger.level()
    on_exit(fn -> Logger.configure(level: level) end)
    Logger.configure(level: :none)

    before = %{
      vm_fds: vm_fd_count(),
      ports: Port.list(),
      processes: length(Process.list()),
      sp_fds: fd_count(spawner),
      sp_rss: rss_kb(spawner)
    }

    deadline = System.monotonic_time(:millisecond) + @seconds * 1000

    counts =
      1..@callers
      |> Enum.map(fn i -> Task.async(fn -> caller(seed + i, kinds, deadline) end) end)
      |> Task.await_many(:infinity)
      |> Enum.reduce(%{}, &Map.merge(&1, &2, fn _, a, b -> a + b end))

    Logger.configure(level: level)

    # What was done, as counts: kind/outcome => n.
    IO.puts(
      "chaos: " <>
        (counts |> Enum.sort() |> Enum.map_join(", ", fn {{k, o}, n} -> "#{k}/#{o} #{n}" end))
    )

    runs = counts |> Map.values() |> Enum.sum()

    killed =
      counts
      |> Enum.filter(&match?({{_, :killed}, _}, &1))
      |> Enum.map(&elem(&1, 1))
      |> Enum.sum()

    hung =
      counts |> Enum.filter(&match?({{_, :hung}, _}, &1)) |> Enum.map(&elem(&1, 1)) |> Enum.sum()

    assert eventually(fn -> children_of(spawner) == [] end, 10_000),
           "left behind: #{inspect(children_of(spawner))}"

    assert spawner_pid() == spawner, "the spawner was restarted"
    assert zombies() == []

    assert eventually(fn -> Port.list() -- before.ports == [] end),
           inspect(Port.list() -- before.ports)

    assert eventually(fn -> vm_fd_count() <= before.vm_fds end),
           "VM fds #{before.vm_fds} -> #{vm_fd_count()}"

    assert eventually(fn -> fd_count(spawner) <= before.sp_fds end), "spawner fds grew"

    assert eventually(fn -> length(Process.list()) <= before.processes end, 5000),
           "Erlang processes #{before.processes} -> #{length(Process.list())}"

    leaves = Path.wildcard("/sys/fs/cgroup/**/corral.#{spawner}/*") |> Enum.filter(&File.dir?/1)
    assert length(leaves) <= 16, inspect(leaves)
    assert Enum.all?(leaves, &(File.read!(Path.join(&1, "cgroup.procs")) == ""))
    growth = rss_kb(spawner) - before.sp_rss

    IO.puts(
      "chaos: #{runs} runs, #{killed} owners killed, #{hung} hung; " <>
        "spawner RSS growth #{growth} KiB; cgroup leaves left #{length(leaves)}"
    )

    assert hung == 0
    assert growth < 2048, "spawner RSS grew by #{growth} KiB"
  end

  # One caller: random runs until the deadline, each in an owner process of
  # its own, which is killed at a random moment in a third of the runs.
  defp caller(seed, kinds, deadline) do
    :rand.seed(:exsss, seed)
    loop(kinds, deadline, %{})
  end

  defp loop(kinds, deadline, counts) do
    if System.monotonic_time(:millisecond) >= deadline do
      counts
    else
      kind = Enum.random(kinds)
      kill_after = if :rand.uniform(3) == 1, do: :rand.uniform(60) - 1
      outcome = one_run(kind, kill_after)
      loop(kinds, deadline, Map.update(counts, {kind, outcome}, 1, &(&1 + 1)))
    end
  end

  defp one_run(kind, kill_after) do
    me = self()
    # Choices are made here, from this caller's seeded state.
    arg = :rand.uniform(1000)

    {owner, ref} =
      spawn_monitor(fn ->
        result = run(kind, arg)
        send(me, {:result, self(), result})
      end)

    if kill_after do
      Process.sleep(kill_after)
      Process.exit(owner, :kill)
    end

    receive do
      {:DOWN, ^ref, :process, _, :killed} ->
        flush_result(owner)
        :killed

      {:DOWN, ^ref, :process, _, :normal} ->
        receive do
          {:result, ^owner, :ok} -> :ok
          {:result, ^owner, other} -> raise "#{kind}: #{inspect(other)}"
        end

      {:DOWN, ^ref, :process, _, reason} ->
        raise "#{kind} crashed: #{inspect(reason, limit: 30)}"
    after
      30_000 ->
        Process.exit(owner, :kill)
        :hung
    end
  end

  defp flush_result(owner) do
    receive do
      {:result, ^owner, _} -> :ok
    after
      0 -> :ok
    end
  end

  defp fixture(name), do: Path.join(@fixtures, name)

  # Each run checks its own result: a wrong one is a failure, not chaos.
  defp run(:fast_exit, _), do: check({"", 0} = Corral.cmd("true", []))
  defp run(:exit_status, _), do: check({"", 3} = Corral.cmd("sh", ["-c", "exit 3"]))

  defp run(:flood, n) do
    bytes = n * 1024
    {out, 0} = Corral.cmd(fixture("flood"), ["#{bytes}"])
    check(byte_size(out) == bytes)
  end

  defp run(:timeout, n),
    do: check({_, :timeout} = Corral.cmd("sleep", ["10"], timeout: rem(n, 50) + 1))

  defp run(:tree, n) do
    stream = Corral.stream!(fixture("tree"), ["2", "2"], lines: true, kill_timeout: rem(n, 100))
    check(length(Enum.take(stream, 3)) == 3)
  end

  defp run(:escape, _) do
    [line] = Corral.stream!(fixture("escape"), [], lines: true, kill_timeout: 50) |> Enum.take(1)
    check(String.starts_with?(line, "escaped "))
  end

  defp run(:exec_failure, _),
    do: check({:error, {:eacces, :exec}} = :corral.cmd("/etc/passwd", []))

  defp run(:chdir_failure, _),
    do: check({:error, {:enoent, :chdir}} = :corral.cmd("true", [], cd: "/no/such/dir"))

  defp run(:stream_halted, n) do
    chunks = Corral.stream!(fixture("flood"), ["100000000"], window: 4096 + n) |> Enum.take(2)
    check(length(chunks) == 2)
  end

  defp run(:stream_lines_halted, _),
    do: check(["y\n", "y\n"] = Corral.stream!("yes", [], lines: true) |> Enum.take(2))

  defp run(:ignore_term, n) do
    {:ok, port} = :corral.open(fixture("ignore_term"), ["2"], kill_timeout: rem(n, 80))
    # SIGTERM is ignored once it says "ready" (its children inherit that).
    assert_receive {^port, {:data, :stdout, "ready" <> _}}, 10_000
    check({:exit_signal, 9} = :corral.stop(port))
  end

  defp run(:process, n) do
    {:ok, p} = Corral.Process.start("cat", [], kill_timeout: rem(n, 80))
    :ok = Corral.Process.write(p, "x")
    {:ok, "x"} = Corral.Process.read(p)

    if rem(n, 2) == 0 do
      check(:ok = Corral.Process.stop(p))
    else
      # Left to the owner's exit.
      :ok
    end
  end

  defp run(:daemon, n) do
    Process.flag(:trap_exit, true)
    {:ok, d} = Corral.Daemon.start_link("sleep", ["600"], kill_timeout: rem(n, 80))
    check(:ok = GenServer.stop(d))
  end

  defp run(:stdin, n) do
    input = :binary.copy("z", n * 100)
    check({^input, 0} = Corral.cmd("cat", [], input: input))
  end

  defp check(false), do: :failed
  defp check(_), do: :ok
end
