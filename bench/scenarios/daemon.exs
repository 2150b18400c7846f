# A chatty daemon: `yes` under Corral.Daemon, every line logged through
# :logger to a handler that discards it, for a fixed time. Lines per second
# and the VM's memory growth, beside System.cmd/3 reading the same output
# (counting its lines), and beside the daemon with MuonTrap's documented
# default window (`stdio_window` 10 KB; MuonTrap documents no throughput
# figure) and with a no-op logger_fun (what Logger itself costs).
defmodule Bench.Daemon do
  @moduledoc false
  import Bench
  @mib 1024 * 1024

  # System.cmd has no flow control: its run stops past this growth.
  @cap 2 * 1024 * @mib

  # The :logger handler of the runs: called in the daemon for every line,
  # it drops the event.
  defmodule NullHandler do
    @moduledoc false
    def log(_event, _config), do: :ok
  end

  # An I/O device for System.cmd's `into:`: counts the newlines of what is
  # written and drops the bytes.
  defmodule LineCounter do
    @moduledoc false
    def start(counter), do: spawn_link(fn -> loop(counter) end)

    defp loop(counter) do
      receive do
        {:io_request, from, ref, {:put_chars, _enc, chars}} ->
          count(counter, chars)
          send(from, {:io_reply, ref, :ok})

        {:io_request, from, ref, {:put_chars, _enc, m, f, a}} ->
          count(counter, apply(m, f, a))
          send(from, {:io_reply, ref, :ok})

        {:io_request, from, ref, _} ->
          send(from, {:io_reply, ref, {:error, :request}})
      end

      loop(counter)
    end

    defp count(counter, chars) do
      bin = IO.iodata_to_binary(chars)
      :counters.add(counter, 1, length(:binary.matches(bin, "\n")))
      :counters.add(counter, 2, byte_size(bin))
    end
  end

  @doc "The measurement of every variant, made once per harness run."
  def run, do: once(:daemon, &measure/0)

  defp measure do
    ms = n(10_000, 1_000)
    yes = System.find_executable("yes") || raise "yes not found"

    variants = [
      {"Corral.Daemon, Logger (null handler)", {:daemon, [log_output: :info]}},
      {"Corral.Daemon, stdio_window 10 KB", {:daemon, [log_output: :info, stdio_window: 10_240]}},
      {"Corral.Daemon, no-op logger_fun", {:daemon, [logger_fun: fn _ -> :ok end]}},
      {"System.cmd, counting lines", :system_cmd}
    ]

    results =
      with_null_logger(fn ->
        # The first run of the Logger path is slower (code loading, caches
        # cold): one short run, not counted.
        once_run({:daemon, [log_output: :info]}, yes, 300)
        for {name, kind} <- variants, do: {name, once_run(kind, yes, ms)}
      end)

    IO.puts(
      "`yes` for #{ms} ms each; growth of :erlang.memory(:total) and of the VM's RSS over the start."
    )

    table(
      "variant|lines/s|MB/s|peak growth|peak RSS growth|yes gone",
      for {name, r} <- results do
        [
          name,
          fmt(r.lines / r.seconds, 0),
          fmt(r.bytes / r.seconds / 1.0e6, 1),
          size(r.peak),
          size(r.peak_rss),
          if(r.gone, do: "yes", else: "NO")
        ]
      end
    )

    if Enum.any?(results, fn {_, r} -> r.capped end),
      do: IO.puts("(System.cmd stopped early at #{size(@cap)} growth)")

    unless Enum.all?(results, fn {_, r} -> r.gone end), do: raise("a `yes` outlived its run")
    Map.new(results)
  end

  @doc "Lines per second: the daemon logging to Logger, beside the others."
  def lines do
    r = run()
    rate = &(&1.lines / &1.seconds)

    %{
      corral: rate.(r["Corral.Daemon, Logger (null handler)"]),
      baselines: [
        rate.(r["System.cmd, counting lines"]),
        rate.(r["Corral.Daemon, stdio_window 10 KB"]),
        rate.(r["Corral.Daemon, no-op logger_fun"])
      ]
    }
  end

  @doc "Peak VM memory growth: the daemon logging to Logger, beside System.cmd."
  def memory do
    r = run()

    %{
      corral: r["Corral.Daemon, Logger (null handler)"].peak,
      baselines: [r["System.cmd, counting lines"].peak]
    }
  end

  # Every other handler off (the console would print every line), the null
  # handler on, and the primary level open, for the time of `fun`.
  defp with_null_logger(fun) do
    primary = :logger.get_primary_config()
    others = for id <- :logger.get_handler_ids(), {:ok, c} = :logger.get_handler_config(id), do: c
    for c <- others, do: :ok = :logger.set_handler_config(c.id, :level, :none)
    :ok = :logger.add_handler(:corral_bench_null, NullHandler, %{level: :all})
    :ok = :logger.set_primary_config(:level, :all)

    try do
      fun.()
    after
      :logger.remove_handler(:corral_bench_null)
      :logger.set_primary_config(:level, primary.level)
      for c <- others, do: :logger.set_handler_config(c.id, :level, c.level)
    end
  end

  defp once_run(kind, yes, ms) do
    :erlang.garbage_collect()
    Process.sleep(200)
    mem0 = :erlang.memory(:total)
    rss0 = rss(:os.getpid())
    {stop, sample} = start(kind, yes)
    t0 = now_ns()
    {peak, peak_rss, capped} = sample_memory(mem0, rss0, t0 + ms * 1_000_000, {0, 0})
    {lines, bytes, os_pid} = sample.()
    seconds = (now_ns() - t0) / 1.0e9
    stop.()
    gone = match?({:ok, _}, wait_dead([os_pid], "yes", now_ns(), 10_000, 5000))

    %{
      lines: lines,
      bytes: bytes,
      seconds: seconds,
      peak: peak,
      peak_rss: peak_rss,
      capped: capped,
      gone: gone
    }
  end

  # {stop, sample}: sample.() gives {lines, bytes, os pid} so far.
  defp start({:daemon, opts}, yes) do
    {:ok, pid} = Corral.Daemon.start_link(yes, [], opts)
    os_pid = Corral.Daemon.os_pid(pid)

    sample = fn ->
      s = Corral.Daemon.statistics(pid)
      {s.lines, s.output_byte_count, os_pid}
    end

    stop = fn ->
      Process.unlink(pid)
      :ok = GenServer.stop(pid)
    end

    {stop, sample}
  end

  defp start(:system_cmd, yes) do
    counter = :counters.new(2, [])
    device = LineCounter.start(counter)

    owner = spawn(fn -> System.cmd(yes, [], into: IO.binstream(device, :line)) end)

    # System.cmd/3 does not give its port out: find `yes` among the
    # children of the VM's port launcher.
    os_pid = wait_for_yes(vm_child("erl_child_setup"), 100)

    sample = fn -> {:counters.get(counter, 1), :counters.get(counter, 2), os_pid} end

    # SIGKILL first, so that `yes` does not print "Broken pipe"; then the
    # owner, whose death closes the port.
    stop = fn ->
      kill_pids([os_pid])
      Process.exit(owner, :kill)
      Process.unlink(device)
      Process.exit(device, :kill)
    end

    {stop, sample}
  end

  defp wait_for_yes(_parent, 0), do: raise("System.cmd's `yes` not found")

  defp wait_for_yes(parent, tries) do
    case live_children(parent, "yes") do
      [pid] ->
        pid

      _ ->
        Process.sleep(10)
        wait_for_yes(parent, tries - 1)
    end
  end

  defp sample_memory(mem0, rss0, deadline, {peak, peak_rss}) do
    Process.sleep(100)
    growth = :erlang.memory(:total) - mem0
    rss_growth = rss(:os.getpid()) - rss0
    acc = {max(peak, growth), max(peak_rss, rss_growth)}

    cond do
      growth > @cap -> Tuple.append(acc, true)
      now_ns() >= deadline -> Tuple.append(acc, false)
      true -> sample_memory(mem0, rss0, deadline, acc)
    end
  end
end
