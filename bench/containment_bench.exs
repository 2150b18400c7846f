# Containment benchmarks for Corral, with their open_port baselines, from one run.
#
#   mix run bench/containment_bench.exs
#
# 1. Concurrency: up to 10,000 concurrent `sleep 60` children; memory and fds
#    per child in the VM and in the spawner; time to open; time until every
#    child is gone once the owners are killed. Baseline: 1,000 open_port
#    sleeps (which survive Port.close; the script kills them itself).
# 2. Spawn throughput: 16 parallel callers of :corral.cmd("/bin/true", [])
#    vs open_port + exit_status, ~5 s each, interleaved in halves.
# 3. Kill latency: test/fixtures/bin/tree 2 2 (7 processes that honour
#    SIGTERM); owner killed -> all 7 gone (1 ms sleep polls, and 0.2 ms spin
#    polls, whose busy scheduler skews a 2-CPU machine), and :corral.stop/1
#    -> returns, with the 7 pids checked then.
#
# Environment knobs: CORRAL_CB_CHILDREN (10000), CORRAL_CB_SECONDS (5),
# CORRAL_CB_TRIALS (100), CORRAL_CB_ONLY (e.g. "1,3").

Code.require_file("support.exs", __DIR__)

defmodule Corral.ContainmentBench do
  import Corral.BenchSupport
  @kib 1024
  @mib 1024 * 1024

  @tree Path.expand("../test/fixtures/bin/tree", __DIR__)

  # fds kept free in the VM (for /proc reads, System.cmd, ...) and in the
  # spawner (pipes and sockets it opens while spawning one child).
  @vm_fd_reserve 64
  @spawner_fd_reserve 32

  def main do
    started = System.monotonic_time(:millisecond)
    header()

    benches = [
      {"1. Concurrency", &concurrency/0},
      {"2. Spawn throughput", &throughput/0},
      {"3. Kill latency", &kill_latency/0}
    ]

    results = run_selected(benches, "CORRAL_CB_ONLY")

    verdict(results)
    IO.puts("\nLoad average at end: #{loadavg()}")
    IO.puts("Total time: #{fmt((System.monotonic_time(:millisecond) - started) / 1000, 1)} s")
  end

  ## Header

  defp header do
    {nproc, 0} = System.cmd("nproc", [])
    {uname, 0} = System.cmd("uname", ["-srm"])
    {soft, hard} = nofile_limit("self")

    IO.puts("Corral containment benchmarks")
    IO.puts("  nproc:    #{String.trim(nproc)}, #{System.schedulers_online()} schedulers online")
    IO.puts("  kernel:   #{String.trim(uname)}")

    IO.puts(
      "  OTP #{otp_version()} (ERTS #{:erlang.system_info(:version)}), Elixir #{System.version()}, " <>
        "MIX_ENV=#{Mix.env()}"
    )

    IO.puts(
      "  ulimit -n: #{soft} soft / #{hard} hard (the VM's RLIMIT_NOFILE); " <>
        "port_limit #{:erlang.system_info(:port_limit)}; " <>
        "pid_max #{String.trim(File.read!("/proc/sys/kernel/pid_max"))}"
    )

    IO.puts("  load average at start: #{loadavg()}")
  end

  ## /proc

  defp nofile_limit(pid) do
    limits = File.read!("/proc/#{pid}/limits")
    [_, soft, hard] = Regex.run(~r/^Max open files\s+(\S+)\s+(\S+)/m, limits)
    {to_limit(soft), to_limit(hard)}
  end

  defp to_limit("unlimited"), do: :infinity
  defp to_limit(s), do: String.to_integer(s)

  # {comm, state, ppid, utime + stime in ticks, cutime + cstime} or nil.
  defp stat(pid) do
    case :prim_file.read_file(~c"/proc/#{pid}/stat") do
      {:ok, bin} -> parse_stat(bin)
      _ -> nil
    end
  end

  defp parse_stat(bin) do
    # comm may hold spaces and parentheses; it ends at the last ") ".
    [head, rest] = :binary.split(bin, ") ", [:global]) |> then(&split_last/1)
    [_pid, comm] = :binary.split(head, " (")
    fields = String.split(rest, " ")
    [state, ppid | _] = fields
    ticks = fn i -> String.to_integer(Enum.at(fields, i)) end
    {comm, state, String.to_integer(ppid), ticks.(11) + ticks.(12), ticks.(13) + ticks.(14)}
  end

  defp split_last(parts) do
    {init, [last]} = Enum.split(parts, -1)
    [Enum.join(init, ") "), last]
  end

  defp fd_count(pid) do
    case :file.list_dir(~c"/proc/#{pid}/fd") do
      {:ok, l} -> length(l)
      {:error, e} -> raise "cannot list /proc/#{pid}/fd: #{inspect(e)}"
    end
  end

  defp rss(pid) do
    status = File.read!("/proc/#{pid}/status")
    [_, kb] = Regex.run(~r/^VmRSS:\s+(\d+) kB/m, status)
    String.to_integer(kb) * @kib
  end

  defp all_pids do
    {:ok, names} = :file.list_dir(~c"/proc")

    for name <- names, {pid, ""} <- [Integer.parse(to_string(name))], do: pid
  end

  # Live (non-zombie) processes named `comm` whose parent is `ppid`.
  defp live_children(ppid, comm) do
    for pid <- all_pids(),
        match?({^comm, state, ^ppid, _, _} when state != "Z", stat(pid)),
        do: pid
  end

  defp vm_child(comm) do
    case live_children(String.to_integer(to_string(:os.getpid())), comm) do
      [pid] -> pid
      [] -> raise "no #{comm} process under the VM"
      pids -> raise "several #{comm} processes under the VM: #{inspect(pids)}"
    end
  end

  defp spawner, do: vm_child("corral_spawner")

  # Dead: no /proc entry, a zombie, or the pid now belongs to another program.
  defp alive?(pid, comm) do
    case stat(pid) do
      {^comm, state, _, _, _} -> state != "Z"
      _ -> false
    end
  end

  # Waits until none of `pids` is alive, checking the oldest survivor every
  # `poll_us`. Returns the µs taken, or {:timeout, survivors}.
  defp wait_all_dead(pids, comm, t0, poll_us, deadline_ms) do
    do_wait(pids, comm, t0, poll_us, t0 + deadline_ms * 1_000_000)
  end

  defp do_wait([], _comm, t0, _poll, _deadline),
    do: {:ok, (System.monotonic_time(:nanosecond) - t0) / 1000}

  defp do_wait([pid | rest] = pids, comm, t0, poll_us, deadline) do
    cond do
      not alive?(pid, comm) ->
        do_wait(rest, comm, t0, poll_us, deadline)

      System.monotonic_time(:nanosecond) > deadline ->
        {:timeout, Enum.filter(pids, &alive?(&1, comm))}

      poll_us >= 1000 ->
        Process.sleep(div(poll_us, 1000))
        do_wait(pids, comm, t0, poll_us, deadline)

      true ->
        spin_until(System.monotonic_time(:nanosecond) + poll_us * 1000)
        do_wait(pids, comm, t0, poll_us, deadline)
    end
  end

  defp spin_until(t) do
    if System.monotonic_time(:nanosecond) < t do
      :erlang.yield()
      spin_until(t)
    end
  end

  # :erlang.memory(:total) once the ports of an earlier run have closed and
  # after two rounds of garbage collection.
  defp vm_memory, do: vm_memory(length(Port.list()), 20)

  defp vm_memory(ports, tries) do
    Process.sleep(50)
    now = length(Port.list())

    if now != ports and tries > 0 do
      vm_memory(now, tries - 1)
    else
      for _ <- 1..2 do
        for p <- Process.list(), do: :erlang.garbage_collect(p)
        Process.sleep(20)
      end

      :erlang.memory(:total)
    end
  end

  ## 1. Concurrency

  def concurrency do
    target = env_int("CORRAL_CB_CHILDREN", 10_000)
    owners_n = 8

    {"", 0} = :corral.cmd("/bin/true", [])
    sp = spawner()
    {vm_soft, _} = nofile_limit("self")
    {sp_soft, _} = nofile_limit(sp)

    # Pilot: 100 children, to learn the fd cost per child on both sides.
    pilot_n = 100
    vm_fd0 = fd_count("self")
    sp_fd0 = fd_count(sp)
    [pilot] = start_owners(1, pilot_n, :infinity)
    [{:done, _, ^pilot_n, :ok, pilot_pids}] = collect_owners([pilot])
    vm_pc = max(1, round((fd_count("self") - vm_fd0) / pilot_n))
    sp_pc = max(1, round((fd_count(sp) - sp_fd0) / pilot_n))
    containment = cgroup_of(hd(pilot_pids))
    t0 = System.monotonic_time(:nanosecond)
    Process.exit(pilot, :kill)
    {:ok, _} = wait_all_dead(pilot_pids, "sleep", t0, 1000, 30_000)
    Process.sleep(200)

    # What the fd limits allow, each side keeping a reserve. In the spawner a
    # child's pidfd gives way when the fd table fills; its control socket
    # cannot, so one fd per child counts there.
    vm_cap = div(vm_soft - fd_count("self") - @vm_fd_reserve, vm_pc)
    sp_cap = sp_soft - fd_count(sp) - @spawner_fd_reserve

    # Spawn latency with nothing else running, for the runs below.
    idle_corral = median_us(&corral_true/0)
    idle_port = median_us(&port_true/0)
    planned = Enum.min([target, vm_cap, sp_cap])

    limiting =
      cond do
        planned == target -> nil
        vm_cap <= sp_cap -> "the VM's RLIMIT_NOFILE (#{vm_soft}; #{vm_pc} fds/child)"
        true -> "the spawner's RLIMIT_NOFILE (#{sp_soft}; #{sp_pc} fds/child)"
      end

    IO.puts(
      "Options stdin: :null, stdout: :null, stderr: :null, so a child costs " <>
        "the VM #{vm_pc} fd(s) (its control socket) instead of 4;\n" <>
        "the spawner measured #{sp_pc} fds/child (100-child pilot: control socket and pidfd; " <>
        "the pidfds give way as its fd table fills). fd room: VM #{vm_cap} " <>
        "children, spawner #{sp_cap} (keeping #{@vm_fd_reserve}/#{@spawner_fd_reserve} fds free).\n" <>
        "A child's cgroup: #{containment}"
    )

    if limiting do
      IO.puts(
        "=> #{target} is out of reach: at most #{planned} children, limited by #{limiting}."
      )
    end

    small = corral_run(1000, 1, 30_000)
    big = corral_run(planned, owners_n, 75_000)
    port = open_port_sleeps(1000)

    row = fn name, r ->
      [
        name,
        size(r.mem_pc),
        size(r.helper_rss_pc),
        fmt(r.vm_fd_pc, 2),
        fmt(r.helper_fd_pc, 2),
        fmt(r.open_us / r.n, 0),
        fmt(r.busy_us, 0),
        r.gone,
        "#{r.survivors}",
        r.fds_after
      ]
    end

    ratio_row = fn name, r ->
      [
        name,
        ratio(r.mem_pc, port.mem_pc),
        ratio(r.helper_rss_pc, port.helper_rss_pc),
        ratio(r.vm_fd_pc, port.vm_fd_pc),
        ratio(r.helper_fd_pc, port.helper_fd_pc),
        ratio(r.open_us / r.n, port.open_us / port.n),
        ratio(r.busy_us, port.busy_us),
        "",
        "",
        ""
      ]
    end

    IO.puts("")

    table(
      [
        "variant",
        "VM mem/child",
        "helper RSS/child",
        "VM fds/child",
        "helper fds/child",
        "open µs/child",
        "spawn µs while open",
        "all gone after close",
        "survivors",
        "fds after (VM/helper)"
      ],
      [
        row.("Corral, 1000, 1 owner", small),
        row.("Corral, #{big.n}, #{owners_n} owners", big),
        row.("open_port, 1000, 1 owner", port),
        ratio_row.("ratio Corral 1000 / open_port", small),
        ratio_row.("ratio Corral #{big.n} / open_port", big)
      ]
    )

    IO.puts(
      "helper = corral_spawner for Corral, erl_child_setup for open_port. VM mem = " <>
        ":erlang.memory(:total) delta after a GC; RSS = VmRSS delta; open µs = wall time " <>
        "to open all / N.\nCorral close = Process.exit(owner, :kill) for every owner; " <>
        "\"all gone\" = until the last sleep is dead or reaped (1 ms polls); survivors = live " <>
        "`sleep` children of the spawner or of our pids,\ncounted over all of /proc after that. " <>
        "fds after = the VM's and the helper's fd count after the close, minus before the opens.\n" <>
        "spawn µs while open = median of 200 spawns of /bin/true (:corral.cmd, or open_port + " <>
        "exit_status) with the N sleeps running; with none running: Corral " <>
        "#{fmt(idle_corral, 0)} µs, open_port #{fmt(idle_port, 0)} µs.\n" <>
        "open_port: #{port.survivors} of #{port.n} sleeps still running #{port.check_ms} ms " <>
        "after Port.close/1; the script then SIGKILLed them (#{port.left_after_kill} left)."
    )

    for r <- [small, big], r.errors != [] or r.stuck != [] do
      IO.puts(
        "Corral #{r.n}: open errors #{inspect(r.errors)}, stuck owners #{length(r.stuck)}" <>
          if(r.spawner_changed, do: "; the spawner changed during the opens", else: "")
      )
    end

    reason =
      cond do
        big.n >= target -> ""
        limiting && big.errors == [] && big.n == planned -> "; limited by #{limiting}"
        true -> "; stopped by #{inspect(big.errors ++ big.stuck)}"
      end

    {big.n >= target and big.survivors == 0 and small.survivors == 0 and big.close_ms != nil,
     "concurrency: #{big.n}/#{target} children#{reason}; #{big.survivors} survivors, " <>
       "all gone #{big.gone} after killing the owners (target: #{target}, 0 survivors); " <>
       "open #{ratio(big.open_us / big.n, port.open_us / port.n)} open_port's time per child; " <>
       "spawn latency with #{big.n} running #{fmt(big.busy_us, 0)} µs " <>
       "(#{ratio(big.busy_us, idle_corral)} of none running)"}
  end

  defp corral_true do
    {"", 0} = :corral.cmd("/bin/true", [])
  end

  defp port_true do
    p = Port.open({:spawn_executable, "/bin/true"}, [:exit_status, :binary])

    receive do
      {^p, {:exit_status, 0}} -> :ok
    after
      10_000 -> raise "open_port: /bin/true gave no exit status in 10 s"
    end
  end

  # Median wall time of n sequential calls of f, in µs.
  defp median_us(f, n \\ 200) do
    ts =
      for _ <- 1..n do
        t0 = System.monotonic_time(:nanosecond)
        f.()
        (System.monotonic_time(:nanosecond) - t0) / 1000
      end

    ts |> Enum.sort() |> Enum.at(div(n, 2))
  end

  defp cgroup_of(pid) do
    case File.read("/proc/#{pid}/cgroup") do
      {:ok, text} ->
        case Regex.run(~r/^0::(.*)$/m, text) do
          [_, path] -> "#{path} (cgroup v2 entry)"
          _ -> text |> String.split("\n", trim: true) |> Enum.take(2) |> Enum.join("; ")
        end

      _ ->
        "unknown"
    end
  end

  # Opens `total` sleeps from `k` owners, measures, kills the owners and
  # times until every sleep is gone.
  defp corral_run(total, k, budget_ms) do
    sp = spawner()
    mem0 = vm_memory()
    vm_fd0 = fd_count("self")
    sp_fd0 = fd_count(sp)
    sp_rss0 = rss(sp)

    t_start = System.monotonic_time(:nanosecond)
    owners = start_owners(k, total, System.monotonic_time(:millisecond) + budget_ms)
    results = collect_owners(owners)
    open_us = (System.monotonic_time(:nanosecond) - t_start) / 1000

    pids = Enum.flat_map(results, fn {:done, _, _, _, ps} -> ps end)
    n = length(pids)
    errors = Enum.uniq(for {:done, _, _, err, _} <- results, err not in [:ok, :stuck], do: err)
    stuck = for {:done, {:stuck, o}, _, _, _} <- results, do: o
    if n == 0, do: raise("no child opened: #{inspect(errors)}")

    Process.sleep(300)
    sp1 = spawner()
    busy_us = median_us(&corral_true/0)

    r = %{
      busy_us: busy_us,
      n: n,
      open_us: open_us,
      errors: errors,
      stuck: stuck,
      spawner_changed: sp1 != sp,
      mem_pc: (vm_memory() - mem0) / n,
      vm_fd_pc: (fd_count("self") - vm_fd0) / n,
      helper_fd_pc: (fd_count(sp1) - sp_fd0) / n,
      helper_rss_pc: (rss(sp1) - sp_rss0) / n
    }

    t0 = System.monotonic_time(:nanosecond)
    Enum.each(owners, &Process.exit(&1, :kill))
    gone = wait_all_dead(Enum.sort(pids), "sleep", t0, 1000, 30_000)
    Process.sleep(200)
    survivors = Enum.uniq(live_children(sp1, "sleep") ++ Enum.filter(pids, &alive?(&1, "sleep")))
    kill_leftovers(survivors)

    close_ms =
      case gone do
        {:ok, us} -> us / 1000
        {:timeout, _} -> nil
      end

    Map.merge(r, %{
      close_ms: close_ms,
      gone: if(close_ms, do: "#{fmt(close_ms, 0)} ms", else: "> 30 s"),
      survivors: length(survivors),
      fds_after: "#{signed(fd_count("self") - vm_fd0)}/#{signed(fd_count(sp1) - sp_fd0)}"
    })
  end

  # Owner processes, each opening `total / k` sleeps and staying alive until
  # killed. Each reports {:done, owner, count, :ok | error, os_pids}.
  defp start_owners(k, total, deadline) do
    parent = self()
    shares = for i <- 0..(k - 1), do: div(total, k) + if(i < rem(total, k), do: 1, else: 0)

    for share <- shares do
      spawn(fn ->
        {count, err, pids} = open_sleeps(share, deadline, parent, 0, [])
        send(parent, {:done, self(), count, err, pids})
        Process.sleep(:infinity)
      end)
    end
  end

  defp open_sleeps(0, _deadline, _parent, count, pids), do: {count, :ok, pids}

  defp open_sleeps(left, deadline, parent, count, pids) do
    if deadline != :infinity and System.monotonic_time(:millisecond) > deadline do
      {count, :time_budget, pids}
    else
      case :corral.open("/bin/sleep", ["60"], stdin: :null, stdout: :null, stderr: :null) do
        {:ok, port} ->
          {:ok, os_pid} = :corral.os_pid(port)
          if rem(count, 100) == 0, do: send(parent, {:progress, self()})
          open_sleeps(left - 1, deadline, parent, count + 1, [os_pid | pids])

        {:error, reason} ->
          {count, reason, pids}
      end
    end
  end

  # Waits for every owner's report; an owner silent for 20 s is reported
  # as stuck (e.g. an open/3 that never returns).
  defp collect_owners(owners) do
    collect(owners, %{})
  end

  defp collect(owners, acc) do
    if map_size(acc) == length(owners) do
      Enum.map(owners, &acc[&1])
    else
      receive do
        {:progress, _} ->
          collect(owners, acc)

        {:done, o, count, err, pids} ->
          collect(owners, Map.put(acc, o, {:done, o, count, err, pids}))
      after
        20_000 ->
          stuck =
            for o <- owners, not Map.has_key?(acc, o), into: %{} do
              info = Process.info(o, :current_stacktrace)
              IO.puts("owner #{inspect(o)} silent for 20 s: #{inspect(info, limit: 6)}")
              {o, {:done, {:stuck, o}, 0, :stuck, []}}
            end

          Enum.map(owners, &(acc[&1] || stuck[&1]))
      end
    end
  end

  defp open_port_sleeps(n) do
    helper = vm_child("erl_child_setup")
    parent = self()
    mem0 = vm_memory()
    vm_fd0 = fd_count("self")
    h_fd0 = fd_count(helper)
    h_rss0 = rss(helper)

    owner =
      spawn(fn ->
        t0 = System.monotonic_time(:nanosecond)

        ports = for _ <- 1..n, do: Port.open({:spawn_executable, "/bin/sleep"}, args: ["60"])

        us = (System.monotonic_time(:nanosecond) - t0) / 1000
        pids = for p <- ports, do: elem(Port.info(p, :os_pid), 1)
        send(parent, {:opened, us, pids})

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
    busy_us = median_us(&port_true/0)

    r = %{
      busy_us: busy_us,
      n: n,
      open_us: us,
      mem_pc: (vm_memory() - mem0) / n,
      vm_fd_pc: (fd_count("self") - vm_fd0) / n,
      helper_fd_pc: (fd_count(helper) - h_fd0) / n,
      helper_rss_pc: (rss(helper) - h_rss0) / n
    }

    send(owner, :close)

    receive do
      :closed -> :ok
    after
      10_000 -> raise "Port.close of #{n} ports took over 10 s"
    end

    Process.exit(owner, :kill)
    check_ms = 500
    Process.sleep(check_ms)
    survivors = Enum.filter(pids, &alive?(&1, "sleep"))

    # Clean up what open_port left behind.
    for chunk <- Enum.chunk_every(survivors, 500) do
      System.cmd("kill", ["-KILL" | Enum.map(chunk, &to_string/1)], stderr_to_stdout: true)
    end

    left =
      case wait_all_dead(pids, "sleep", System.monotonic_time(:nanosecond), 1000, 10_000) do
        {:ok, _} -> 0
        {:timeout, l} -> length(l)
      end

    Process.sleep(100)

    Map.merge(r, %{
      survivors: length(survivors),
      gone: "never",
      check_ms: check_ms,
      left_after_kill: left,
      fds_after: "#{signed(fd_count("self") - vm_fd0)}/#{signed(fd_count(helper) - h_fd0)}"
    })
  end

  ## 2. Spawn throughput

  def throughput do
    callers = 16
    secs = env_int("CORRAL_CB_SECONDS", 5)
    half_ms = div(secs * 1000, 2)

    corral = fn ->
      case :corral.cmd("/bin/true", []) do
        {"", 0} -> :ok
        other -> {:error, other}
      end
    end

    port = fn ->
      p = Port.open({:spawn_executable, "/bin/true"}, [:exit_status, :binary])

      receive do
        {^p, {:exit_status, 0}} -> :ok
        {^p, {:exit_status, n}} -> {:error, {:exit_status, n}}
      after
        10_000 -> {:error, :no_exit_status}
      end
    end

    for _ <- 1..20, do: {:ok, :ok} = {corral.(), port.()}
    sp = spawner()
    ecs = vm_child("erl_child_setup")
    tick_ms = clk_tck_ms()

    # Corral, open_port, Corral, open_port: half the time each round.
    rounds =
      for _ <- 1..2, {name, f, helper} <- [{:corral, corral, sp}, {:port, port, ecs}] do
        {name, hammer(f, callers, half_ms, helper)}
      end

    sum = fn name ->
      rs = for {^name, r} <- rounds, do: r

      Enum.reduce(rs, fn r, acc ->
        Map.merge(acc, r, fn
          :first_error, a, b -> a || b
          _, a, b -> a + b
        end)
      end)
    end

    c = sum.(:corral)
    p = sum.(:port)
    rate = fn r -> r.ok / (r.us / 1.0e6) end
    per = fn r, k -> if r.ok > 0, do: r[k] * tick_ms * 1000 / r.ok, else: 0.0 end

    rows =
      for {name, r, helper} <- [
            {":corral.cmd/2", c, "corral_spawner"},
            {"open_port + exit_status", p, "erl_child_setup"}
          ] do
        [
          name,
          "#{r.ok}",
          "#{r.errors}",
          fmt(rate.(r), 0),
          ratio(rate.(r), rate.(p)),
          fmt(per.(r, :vm_ticks), 0),
          "#{fmt(per.(r, :helper_ticks), 0)} (#{helper})",
          fmt(per.(r, :child_ticks), 0),
          fmt(100 * r.busy_ticks / max(r.total_ticks, 1), 0) <> " %"
        ]
      end

    IO.puts(
      "#{callers} callers in parallel, #{secs} s per variant (2 interleaved rounds of #{half_ms} ms); " <>
        "CPU µs per spawn from /proc (#{fmt(tick_ms, 0)} ms ticks);\nmachine busy = " <>
        "non-idle share of all #{System.schedulers_online()} CPUs during the variant (/proc/stat)."
    )

    table(
      [
        "variant",
        "spawns",
        "errors",
        "spawns/s",
        "vs open_port",
        "VM CPU µs",
        "helper CPU µs",
        "reaped children CPU µs",
        "machine busy"
      ],
      rows
    )

    for {name, r} <- [{"corral", c}, {"open_port", p}],
        r.first_error,
        do: IO.puts("#{name} first error: #{inspect(r.first_error)}")

    ratio_v = rate.(c) / rate.(p)

    {ratio_v >= 1.0 and c.errors == 0,
     "throughput: :corral.cmd #{fmt(rate.(c), 0)}/s vs open_port #{fmt(rate.(p), 0)}/s " <>
       "= #{fmt(ratio_v, 2)}× (target ≥ 1.00×, 16 callers)"}
  end

  defp clk_tck_ms do
    case System.cmd("getconf", ["CLK_TCK"]) do
      {hz, 0} -> 1000 / String.to_integer(String.trim(hz))
      _ -> 10.0
    end
  end

  defp hammer(f, callers, ms, helper) do
    parent = self()
    {_, _, _, vm0, _} = stat("self")
    {_, _, _, h0, hc0} = stat(helper)
    {busy0, total0} = machine_cpu()
    t0 = System.monotonic_time(:nanosecond)
    deadline = t0 + ms * 1_000_000

    pids =
      for _ <- 1..callers do
        spawn_link(fn ->
          send(parent, {:hammered, self(), hammer_loop(f, deadline, 0, 0, nil)})
        end)
      end

    results =
      for pid <- pids do
        receive do
          {:hammered, ^pid, r} -> r
        end
      end

    us = (System.monotonic_time(:nanosecond) - t0) / 1000
    {_, _, _, vm1, _} = stat("self")
    {_, _, _, h1, hc1} = stat(helper)
    {busy1, total1} = machine_cpu()

    %{
      busy_ticks: busy1 - busy0,
      total_ticks: total1 - total0,
      ok: Enum.sum(for {ok, _, _} <- results, do: ok),
      errors: Enum.sum(for {_, e, _} <- results, do: e),
      first_error: Enum.find_value(results, fn {_, _, fe} -> fe end),
      us: us,
      vm_ticks: vm1 - vm0,
      helper_ticks: h1 - h0,
      child_ticks: hc1 - hc0
    }
  end

  # {busy, total} jiffies over all CPUs, from the first line of /proc/stat.
  defp machine_cpu do
    [line | _] = String.split(File.read!("/proc/stat"), "\n")
    ["cpu" | fields] = String.split(line)
    ticks = Enum.map(fields, &String.to_integer/1)
    [_user, _nice, _system, idle, iowait | _] = ticks
    total = Enum.sum(Enum.take(ticks, 8))
    {total - idle - iowait, total}
  end

  defp hammer_loop(f, deadline, ok, errors, first) do
    if System.monotonic_time(:nanosecond) >= deadline do
      {ok, errors, first}
    else
      case f.() do
        :ok -> hammer_loop(f, deadline, ok + 1, errors, first)
        {:error, e} -> hammer_loop(f, deadline, ok, errors + 1, first || e)
      end
    end
  end

  ## 3. Kill latency

  def kill_latency do
    unless File.exists?(@tree), do: raise("#{@tree} missing (run `make fixtures`)")
    trials = env_int("CORRAL_CB_TRIALS", 100)
    budget_ms = 20_000

    # Warm-up.
    for _ <- 1..3, do: kill_trial({:kill, 1000})

    kill = run_trials({:kill, 1000}, trials, budget_ms)
    spin = run_trials({:kill, 200}, trials, budget_ms)
    stop = run_trials(:stop, trials, budget_ms)

    {k_med, k_p90, k_max} = pct(kill.times)
    {s_med, s_p90, s_max} = pct(stop.times)
    {p_med, p_p90, p_max} = pct(spin.times)

    IO.puts(
      "`tree 2 2` (7 processes, one group, default SIGTERM action); #{kill.n} + #{spin.n} + #{stop.n} trials; " <>
        "ms. kill owner = Process.exit(owner, :kill) until all 7 pids are gone " <>
        "(dead or zombie, polls of /proc/<pid>/stat);\nstop = :corral.stop(port) " <>
        "until it returns, then the 7 pids checked at once."
    )

    table(
      ["variant", "median", "p90", "max", "over 20 ms", "survivors (sum)", "median / 20 ms"],
      [
        [
          "kill owner -> tree gone, 1 ms sleep polls",
          fmt(k_med, 2),
          fmt(k_p90, 2),
          fmt(k_max, 2),
          "#{Enum.count(kill.times, &(&1 > 20))}/#{kill.n}",
          "#{kill.survivors}",
          ratio(k_med, 20)
        ],
        [
          "kill owner -> tree gone, 0.2 ms spin polls",
          fmt(p_med, 2),
          fmt(p_p90, 2),
          fmt(p_max, 2),
          "#{Enum.count(spin.times, &(&1 > 20))}/#{spin.n}",
          "#{spin.survivors}",
          ratio(p_med, 20)
        ],
        [
          ":corral.stop/1 returns",
          fmt(s_med, 2),
          fmt(s_p90, 2),
          fmt(s_max, 2),
          "#{Enum.count(stop.times, &(&1 > 20))}/#{stop.n}",
          "#{stop.survivors}",
          ratio(s_med, 20)
        ]
      ]
    )

    for {name, r} <- [{"1 ms polls", kill}, {"0.2 ms spin polls", spin}] do
      slow = r.times |> Enum.filter(&(&1 > 5)) |> Enum.sort() |> Enum.map(&fmt(&1, 0))
      if slow != [], do: IO.puts("kill owner, #{name}: trials over 5 ms: #{Enum.join(slow, " ")}")
    end

    IO.puts(
      "The spin poll keeps one of the #{System.schedulers_online()} schedulers busy " <>
        "(:erlang.yield/0 loop) while the port closes and the spawner works; its tail is " <>
        "the benchmark's own interference,
so the verdict uses the 1 ms sleep polls " <>
        "(resolution ~1 ms, an upper bound)."
    )

    IO.puts(
      "Terminal messages from stop: #{inspect(stop.terminals)}. " <>
        "Baseline: open_port has no equivalent, a closed port's children keep running (see 1)."
    )

    ok = k_med < 20 and s_med < 20 and kill.survivors + spin.survivors + stop.survivors == 0

    {ok,
     "kill latency: owner killed -> tree gone median #{fmt(k_med, 2)} ms, p90 #{fmt(k_p90, 2)} ms; " <>
       ":corral.stop median #{fmt(s_med, 2)} ms, p90 #{fmt(s_p90, 2)} ms; " <>
       "#{kill.survivors + spin.survivors + stop.survivors} survivors (target: median < 20 ms, 0 survivors)"}
  end

  defp run_trials(mode, trials, budget_ms) do
    t_end = System.monotonic_time(:millisecond) + budget_ms

    rs =
      Enum.reduce_while(1..trials, [], fn _, acc ->
        if System.monotonic_time(:millisecond) > t_end,
          do: {:halt, acc},
          else: {:cont, [kill_trial(mode) | acc]}
      end)

    %{
      n: length(rs),
      times: Enum.map(rs, & &1.ms),
      survivors: Enum.sum(Enum.map(rs, & &1.survivors)),
      terminals: rs |> Enum.map(& &1.terminal) |> Enum.frequencies()
    }
  end

  defp kill_trial(mode) do
    parent = self()

    owner =
      spawn(fn ->
        {:ok, port} = :corral.open(@tree, ["2", "2"], stdin: :null, stderr: :null)
        pids = read_pids(port, "", 7)
        send(parent, {:tree, self(), pids})

        receive do
          :stop ->
            t0 = System.monotonic_time(:nanosecond)
            terminal = :corral.stop(port)
            t1 = System.monotonic_time(:nanosecond)
            send(parent, {:stopped, self(), (t1 - t0) / 1.0e6, terminal})
        end
      end)

    pids =
      receive do
        {:tree, ^owner, pids} -> pids
      after
        10_000 -> raise "tree did not print its 7 pids within 10 s"
      end

    case mode do
      {:kill, poll_us} ->
        t0 = System.monotonic_time(:nanosecond)
        Process.exit(owner, :kill)

        case wait_all_dead(pids, "tree", t0, poll_us, 10_000) do
          {:ok, us} ->
            %{ms: us / 1000, survivors: 0, terminal: nil}

          {:timeout, left} ->
            kill_leftovers(left)
            %{ms: 10_000.0, survivors: length(left), terminal: nil}
        end

      :stop ->
        send(owner, :stop)

        receive do
          {:stopped, ^owner, ms, terminal} ->
            left = Enum.filter(pids, &alive?(&1, "tree"))
            kill_leftovers(left)
            %{ms: ms, survivors: length(left), terminal: terminal}
        after
          10_000 -> raise ":corral.stop/1 did not return within 10 s"
        end
    end
  end

  defp kill_leftovers([]), do: :ok

  defp kill_leftovers(pids),
    do: System.cmd("kill", ["-KILL" | Enum.map(pids, &to_string/1)], stderr_to_stdout: true)

  defp read_pids(port, buf, n) do
    found = Regex.scan(~r/^pid (\d+)$/m, buf, capture: :all_but_first)

    if length(found) >= n do
      for [p] <- found, do: String.to_integer(p)
    else
      receive do
        {^port, {:data, _, bin}} ->
          :corral.ack(port, byte_size(bin))
          read_pids(port, buf <> bin, n)

        {^port, other} ->
          raise "tree ended early: #{inspect(other)}"
      after
        10_000 -> raise "tree printed #{length(found)} pids in 10 s"
      end
    end
  end

  defp pct([]), do: {0.0, 0.0, 0.0}

  defp pct(xs) do
    s = xs |> Enum.sort() |> List.to_tuple()
    len = tuple_size(s)
    {elem(s, div(len, 2)), elem(s, min(len - 1, div(len * 9, 10))), elem(s, len - 1)}
  end

  ## Formatting

  defp signed(n) when n > 0, do: "+#{n}"
  defp signed(n), do: "#{n}"

  defp size(b) when b < 0, do: "-" <> size(-b)
  defp size(b) when b >= @mib, do: fmt(b / @mib, 2) <> " MiB"
  defp size(b) when b >= @kib, do: fmt(b / @kib, 1) <> " KiB"
  defp size(b), do: "#{round(b)} B"
end

Corral.ContainmentBench.main()
