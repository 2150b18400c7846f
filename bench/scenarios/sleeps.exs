# Containment: many concurrent `sleep 60` children, one measurement that
# several scenarios read.
defmodule Bench.Sleeps do
  @moduledoc false
  import Bench

  def small, do: n(1000, 100)
  def big, do: n(10_000, 300)

  @doc "The measurement of `small` and `big` Corral sleeps and `small` open_port ones, made once."
  def run, do: once(:sleeps, &measure/0)

  # fds kept free in the VM (for /proc reads, System.cmd, ...) and in the
  # spawner (what it opens while spawning one child).
  @vm_reserve 64
  @spawner_reserve 32

  defp measure do
    target = big()
    true = corral_true()
    sp = vm_child("corral_spawner")

    # With stdio :null a child costs the VM one fd (its control socket); in
    # the spawner its pidfd gives way as the fd table fills, its control
    # socket cannot.
    room =
      min(
        nofile_limit("self") - fd_count("self") - @vm_reserve,
        nofile_limit(sp) - fd_count(sp) - @spawner_reserve
      )

    planned = min(target, room)

    if planned < target,
      do: IO.puts("=> #{target} is out of reach: the fd limits allow #{planned}")

    idle = median_us(fn -> true = corral_true() end)
    idle_port = median_us(fn -> true = port_true() end)
    small = corral_sleeps(small(), 1, 30_000)
    big = corral_sleeps(planned, 8, 75_000)
    port = port_sleeps(small())

    cols = [
      mem_pc: &size/1,
      helper_rss_pc: &size/1,
      vm_fd_pc: &fmt(&1, 2),
      helper_fd_pc: &fmt(&1, 2),
      open_pc: &fmt(&1, 0),
      busy_us: &fmt(&1, 0)
    ]

    row = fn name, r ->
      [name | for({k, f} <- cols, do: f.(r[k]))] ++ [r.gone, r.survivors, r.fds_after]
    end

    vs = fn name, r -> [name | for({k, _} <- cols, do: ratio(r[k], port[k]))] ++ ["", "", ""] end

    table(
      "variant|VM mem/child|helper RSS/child|VM fds/child|helper fds/child|open µs/child|" <>
        "spawn µs while open|all gone after close|survivors|fds after (VM/helper)",
      [
        row.("Corral, #{small.n}, 1 owner", small),
        row.("Corral, #{big.n}, 8 owners", big),
        row.("open_port, #{port.n}, 1 owner", port),
        vs.("ratio Corral #{small.n} / open_port", small),
        vs.("ratio Corral #{big.n} / open_port", big)
      ]
    )

    IO.puts("""
    helper = corral_spawner for Corral, erl_child_setup for open_port. VM mem = :erlang.memory(:total)
    delta after a GC; RSS = VmRSS delta; open µs = wall time to open all / N. Corral close =
    Process.exit(owner, :kill) for every owner; "all gone" = until the last sleep is dead or reaped
    (1 ms polls); survivors = live sleeps of the spawner, or carrying the run's mark, 200 ms
    after that (each is described). fds after = fd counts after the close minus before the opens.
    spawn µs while open = median of 200 spawns of /bin/true with the N sleeps running; with none running: Corral #{fmt(idle, 0)} µs, open_port \
    #{fmt(idle_port, 0)} µs. A child's cgroup: #{big.cgroup}.
    open_port: #{port.survivors} of #{port.n} sleeps still running 500 ms after Port.close/1; \
    SIGKILLed then (#{port.left_after_kill} left).\
    """)

    for r <- [small, big],
        r.errors != [],
        do: IO.puts("Corral #{r.n}: stopped by #{inspect(r.errors)}")

    %{
      idle: idle,
      small: small,
      big: big,
      port: port,
      survivors: small.survivors + big.survivors,
      all_opened: big.n == target
    }
  end

  # Opens `total` sleeps from `k` owners, measures, kills the owners and
  # times until every sleep is gone.
  defp corral_sleeps(total, k, budget_ms) do
    sp = vm_child("corral_spawner")
    before = snapshot(sp)
    t0 = now_ns()
    parent = self()
    deadline = System.monotonic_time(:millisecond) + budget_ms

    # Every sleep carries the run's mark in its argument (GNU sleep reads
    # "60.000<n>" as 60 s), so that survivors are found by scanning /proc
    # for it: also those whose pid no report listed, and never another
    # program's sleep that took a listed pid.
    mark = "60.000#{System.unique_integer([:positive])}"

    monitored =
      for i <- 0..(k - 1) do
        share = div(total, k) + if(i < rem(total, k), do: 1, else: 0)

        spawn_monitor(fn ->
          send(parent, {:opened, self(), open_sleeps(mark, share, deadline, [])})
          Process.sleep(:infinity)
        end)
      end

    owners = Enum.map(monitored, &elem(&1, 0))

    try do
      # An owner that crashed or hangs is reported (its sleeps then missing
      # from the list), never waited on silently.
      reports =
        for {o, ref} <- monitored do
          receive do
            {:opened, ^o, report} -> report
            {:DOWN, ^ref, :process, ^o, why} -> {{:owner_crashed, why}, []}
          after
            budget_ms + 20_000 -> {:owner_stuck, []}
          end
        end

      open_us = (now_ns() - t0) / 1000
      pids = Enum.flat_map(reports, &elem(&1, 1))
      if pids == [], do: raise("no sleep opened: #{inspect(reports)}")
      Process.sleep(300)
      if vm_child("corral_spawner") != sp, do: raise("the spawner restarted during the opens")
      busy_us = median_us(fn -> true = corral_true() end)
      r = per_child(before, sp, length(pids))

      cgroup =
        Enum.find_value(pids, "none alive", fn p ->
          with {:ok, t} <- File.read("/proc/#{p}/cgroup"),
               [c] <- Regex.run(~r/^0::.*$/m, t),
               do: c,
               else: (_ -> nil)
        end)

      t1 = now_ns()
      Enum.each(owners, &Process.exit(&1, :kill))
      gone = wait_dead(Enum.sort(pids), "sleep", t1, 1000, 30_000)
      Process.sleep(200)
      survivors = Enum.uniq(live_children(sp, "sleep") ++ marked(mark))
      describe_survivors(survivors, pids, t1)
      kill_pids(survivors)

      Map.merge(r, %{
        n: length(pids),
        open_us: open_us,
        open_pc: open_us / length(pids),
        busy_us: busy_us,
        errors: reports |> Enum.map(&elem(&1, 0)) |> Enum.uniq() |> List.delete(:ok),
        cgroup: cgroup,
        survivors: length(survivors),
        fds_after: fds_after(before, sp),
        close_ms: with({:ok, us} <- gone, do: us / 1000, else: (_ -> nil)),
        gone: with({:ok, us} <- gone, do: "#{fmt(us / 1000, 0)} ms", else: (_ -> "> 30 s"))
      })
    after
      Enum.each(owners, &Process.exit(&1, :kill))
      Enum.each(monitored, fn {_, ref} -> Process.demonitor(ref, [:flush]) end)
    end
  end

  # One line per survivor, for finding out why it lived: whether its pid
  # was listed, its parent, group, session, age, signal masks and cgroup.
  defp describe_survivors(survivors, pids, t1) do
    listed = MapSet.new(pids)
    [up | _] = String.split(File.read!("/proc/uptime"))
    up = String.to_float(up)
    killed_ago = (now_ns() - t1) / 1.0e9

    for p <- survivors,
        {:ok, stat} <- [File.read("/proc/#{p}/stat")],
        {:ok, status} <- [File.read("/proc/#{p}/status")],
        {:ok, cg} <- [File.read("/proc/#{p}/cgroup")] do
      [_, rest] = String.split(stat, ") ", parts: 2)
      f = String.split(rest)
      # starttime: clock ticks after boot (USER_HZ is 100 on Linux).
      age = up - String.to_integer(Enum.at(f, 19)) / 100

      sigs =
        Regex.scan(~r/^(Sig\w+|ShdPnd):\s+(\S+)/m, status)
        |> Enum.map_join(" ", fn [_, k, v] -> "#{k}=#{v}" end)

      IO.puts(
        "survivor #{p}: listed=#{MapSet.member?(listed, p)} state=#{Enum.at(f, 0)} " <>
          "ppid=#{Enum.at(f, 1)} pgrp=#{Enum.at(f, 2)} sid=#{Enum.at(f, 3)} " <>
          "age=#{fmt(age, 2)} s (owners killed #{fmt(killed_ago, 2)} s ago) #{sigs} " <>
          "cgroup=#{String.trim(cg)}"
      )
    end
  end

  defp open_sleeps(_mark, 0, _deadline, pids), do: {:ok, pids}

  defp open_sleeps(mark, left, deadline, pids) do
    if System.monotonic_time(:millisecond) > deadline do
      {:time_budget, pids}
    else
      # spawn/3 returns the pid with the port: a sleep that has already
      # exited (os_pid/1 would answer {:error, closed}) is still listed.
      case :corral.spawn("/bin/sleep", [mark], stdin: :null, stdout: :null, stderr: :null) do
        {:ok, _port, os_pid} -> open_sleeps(mark, left - 1, deadline, [os_pid | pids])
        {:error, reason} -> {reason, pids}
      end
    end
  end

  # Live (not zombie) processes whose command line holds mark.
  defp marked(mark) do
    {:ok, names} = :file.list_dir(~c"/proc")

    for name <- names,
        {pid, ""} <- [Integer.parse(to_string(name))],
        {:ok, cmd} <- [File.read("/proc/#{pid}/cmdline")],
        :binary.match(cmd, mark) != :nomatch,
        alive?(pid, "sleep"),
        do: pid
  end

  defp port_sleeps(n) do
    helper = vm_child("erl_child_setup")
    before = snapshot(helper)
    parent = self()

    owner =
      spawn(fn ->
        t0 = now_ns()
        ports = for _ <- 1..n, do: Port.open({:spawn_executable, "/bin/sleep"}, args: ["60"])
        us = (now_ns() - t0) / 1000
        send(parent, {:opened, us, for(p <- ports, do: elem(Port.info(p, :os_pid), 1))})

        receive do
          :close ->
            Enum.each(ports, &Port.close/1)
            send(parent, :closed)
        end

        Process.sleep(:infinity)
      end)

    {us, pids} =
      receive do
        {:opened, us, pids} -> {us, pids}
      after
        60_000 -> raise "open_port: #{n} sleeps not opened in 60 s"
      end

    Process.sleep(300)
    busy_us = median_us(fn -> true = port_true() end)
    r = per_child(before, helper, n)
    send(owner, :close)

    receive do
      :closed -> :ok
    after
      10_000 -> raise "Port.close of #{n} ports took over 10 s"
    end

    Process.exit(owner, :kill)
    Process.sleep(500)
    survivors = Enum.filter(pids, &alive?(&1, "sleep"))
    # Clean up what open_port leaves behind.
    kill_pids(survivors)

    left =
      case wait_dead(pids, "sleep", now_ns(), 1000, 10_000) do
        {:ok, _} -> 0
        {:timeout, l} -> length(l)
      end

    Process.sleep(100)

    Map.merge(r, %{
      n: n,
      open_us: us,
      open_pc: us / n,
      busy_us: busy_us,
      survivors: length(survivors),
      gone: "never",
      left_after_kill: left,
      fds_after: fds_after(before, helper)
    })
  end

  defp snapshot(helper),
    do: %{mem: vm_memory(), vm_fds: fd_count("self"), fds: fd_count(helper), rss: rss(helper)}

  defp per_child(b, helper, n) do
    %{
      mem_pc: (vm_memory() - b.mem) / n,
      vm_fd_pc: (fd_count("self") - b.vm_fds) / n,
      helper_fd_pc: (fd_count(helper) - b.fds) / n,
      helper_rss_pc: (rss(helper) - b.rss) / n
    }
  end

  defp fds_after(b, helper),
    do: "#{signed(fd_count("self") - b.vm_fds)}/#{signed(fd_count(helper) - b.fds)}"

  defp signed(n) when n > 0, do: "+#{n}"
  defp signed(n), do: "#{n}"
end
