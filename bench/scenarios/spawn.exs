# Spawning /bin/true: the latency of one call against open_port, System.cmd
# and the C and C++ loops, and the throughput of 16 parallel callers.
defmodule Bench.Spawn do
  @moduledoc false
  import Bench

  @true_ "/bin/true"

  def latency do
    runs = n(300, 30)
    warmup = 20

    variants = [
      {"Corral.cmd/3", fn -> {"", 0} = Corral.cmd(@true_, []) end},
      {"open_port + exit_status", fn -> true = port_true() end},
      {"System.cmd/3", fn -> {"", 0} = System.cmd(@true_, []) end}
    ]

    for _ <- 1..warmup, {_, f} <- variants, do: f.()
    times = interleave(for({name, f} <- variants, do: {name, fn -> time_us(f) end}), runs)
    vm = for {name, _} <- variants, do: {name, median(times[name]), pct(times[name], 90)}

    # The same runs after the same warm-up, each loop timing itself.
    native =
      for {name, bin} <- [
            {"C posix_spawn+waitpid", "spawn_loop"},
            {"C++ Boost.Process", "spawn_read"}
          ] do
        try do
          r = run_baseline(bin, ["#{runs}", "#{warmup}", @true_])
          {name, r["median_us"], r["p90_us"]}
        rescue
          e -> IO.puts("#{name}: FAILED: #{Exception.message(e)}") && {name, nil, nil}
        end
      end

    [{_, corral, _}, {_, port, _} | _] = rows = vm ++ native
    IO.puts("#{runs} interleaved runs of #{@true_} each, after #{warmup} warm-ups; µs.")

    table(
      "variant|median|p90|median / open_port",
      for({name, med, p90} <- rows, med, do: [name, fmt(med, 0), fmt(p90, 0), ratio(med, port)])
    )

    switches(n(300, 30))
    %{corral: corral, baselines: Enum.map(tl(rows), &elem(&1, 1))}
  end

  # Context switches per spawn, which load changes far less than time: the
  # VM's threads and the helper that forks (the spawner, erl_child_setup),
  # over `runs` spawns in a row of each.
  defp switches(runs) do
    vm = String.to_integer(to_string(:os.getpid()))

    rows =
      for {name, f, helper} <- [
            {":corral.cmd/2", &corral_true/0, "corral_spawner"},
            {"open_port", &port_true/0, "erl_child_setup"}
          ] do
        h = vm_child(helper)
        {vm0, h0} = {ctx_switches(vm), ctx_switches(h)}
        for _ <- 1..runs, do: true = f.()
        {vm1, h1} = {ctx_switches(vm), ctx_switches(h)}

        per = fn {v1, i1}, {v0, i0} ->
          "#{fmt((v1 - v0) / runs, 2)} + #{fmt((i1 - i0) / runs, 2)}"
        end

        [name, per.(vm1, vm0), "#{per.(h1, h0)} (#{helper})"]
      end

    IO.puts("Context switches per spawn (voluntary + involuntary), #{runs} spawns in a row each.")
    table("variant|VM threads|helper", rows)
  end

  # {voluntary, involuntary} context switches over every thread of pid.
  defp ctx_switches(pid) do
    for status <- Path.wildcard("/proc/#{pid}/task/*/status"),
        {:ok, text} <- [File.read(status)],
        reduce: {0, 0} do
      {v, i} ->
        get = fn key ->
          [_, n] = Regex.run(~r/^#{key}:\s+(\d+)$/m, text)
          String.to_integer(n)
        end

        {v + get.("voluntary_ctxt_switches"), i + get.("nonvoluntary_ctxt_switches")}
    end
  end

  # 16 callers for half the time each round, two rounds: Corral, open_port,
  # Corral, open_port. CPU time per spawn from /proc/<pid>/stat.
  def throughput do
    callers = 16
    half_ms = n(2500, 500)
    for _ <- 1..20, do: {true, true} = {corral_true(), port_true()}
    helpers = %{corral: vm_child("corral_spawner"), port: vm_child("erl_child_setup")}
    variants = [corral: &corral_true/0, port: &port_true/0]

    rounds = for _ <- 1..2, {k, f} <- variants, do: {k, hammer(f, callers, half_ms, helpers[k])}
    [c, p] = for {k, _} <- variants, do: rounds |> Keyword.get_values(k) |> Enum.reduce(&sum/2)
    {hz, 0} = System.cmd("getconf", ["CLK_TCK"])
    tick_us = 1.0e6 / String.to_integer(String.trim(hz))
    rate = fn r -> r.ok / (r.us / 1.0e6) end
    per = fn r, k -> if r.ok > 0, do: fmt(r[k] * tick_us / r.ok, 0), else: "-" end

    IO.puts(
      "#{callers} callers, 2 interleaved rounds of #{half_ms} ms per variant; CPU µs per spawn " <>
        "from /proc; machine busy = non-idle share of all CPUs (/proc/stat)."
    )

    table(
      "variant|spawns|errors|spawns/s|vs open_port|VM CPU µs|helper CPU µs|children CPU µs|machine busy",
      for {name, r, helper} <- [
            {":corral.cmd/2", c, "spawner"},
            {"open_port", p, "erl_child_setup"}
          ] do
        [
          name,
          r.ok,
          r.errors,
          fmt(rate.(r), 0),
          ratio(rate.(r), rate.(p)),
          per.(r, :vm),
          "#{per.(r, :helper)} (#{helper})",
          per.(r, :children),
          fmt(100 * r.busy / max(r.total, 1), 0) <> " %"
        ]
      end
    )

    for {name, r} <- [corral: c, open_port: p],
        r.first_error,
        do: IO.puts("#{name} first error: #{inspect(r.first_error)}")

    %{corral: rate.(c), baselines: [rate.(p)], ok: c.errors == 0}
  end

  defp sum(r, acc),
    do:
      Map.merge(acc, r, fn
        :first_error, a, b -> a || b
        _, a, b -> a + b
      end)

  defp hammer(f, callers, ms, helper) do
    parent = self()
    vm0 = stat("self")
    h0 = stat(helper)
    {busy0, total0} = machine_cpu()
    t0 = now_ns()
    deadline = t0 + ms * 1_000_000

    pids =
      for _ <- 1..callers,
          do: spawn_link(fn -> send(parent, {self(), loop(f, deadline, 0, 0, nil)}) end)

    results =
      for pid <- pids do
        receive do
          {^pid, r} -> r
        end
      end

    us = (now_ns() - t0) / 1000
    {vm1, h1, {busy1, total1}} = {stat("self"), stat(helper), machine_cpu()}

    %{
      ok: Enum.sum(for {ok, _, _} <- results, do: ok),
      errors: Enum.sum(for {_, e, _} <- results, do: e),
      first_error: Enum.find_value(results, &elem(&1, 2)),
      us: us,
      vm: vm1.cpu - vm0.cpu,
      helper: h1.cpu - h0.cpu,
      children: h1.children_cpu - h0.children_cpu,
      busy: busy1 - busy0,
      total: total1 - total0
    }
  end

  defp loop(f, deadline, ok, errors, first) do
    if now_ns() >= deadline do
      {ok, errors, first}
    else
      case f.() do
        true -> loop(f, deadline, ok + 1, errors, first)
        {:error, e} -> loop(f, deadline, ok, errors + 1, first || e)
      end
    end
  end

  # {busy, total} jiffies over all CPUs, from the first line of /proc/stat.
  defp machine_cpu do
    ["cpu" | fields] = File.read!("/proc/stat") |> String.split("\n") |> hd() |> String.split()
    [_, _, _, idle, iowait | _] = ticks = Enum.map(fields, &String.to_integer/1)
    total = Enum.sum(Enum.take(ticks, 8))
    {total - idle - iowait, total}
  end
end
