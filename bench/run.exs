# Corral's benchmarks, side by side with their baselines, from one run.
#
#   make bench                    (MIX_ENV=prod mix run bench/run.exs)
#   mix run bench/run.exs         (any MIX_ENV works)
#
# 1. Spawn latency: Corral.cmd/3 vs open_port, System.cmd/3 and posix_spawn.
# 2. Throughput: `cat` of a 1 GiB file through Corral (several windows),
#    through open_port, and through a raw pipe read by a C program.
# 3. Flood memory: `yes` for 5 s with an owner that never reads.
#
# The C baselines in bench/c/ are compiled here into bench/out/ (git-ignored).
# Environment knobs: CORRAL_BENCH_SPAWN_RUNS (300), CORRAL_BENCH_TP_RUNS (5),
# CORRAL_BENCH_FLOOD_MS (5000), CORRAL_BENCH_FILE (/tmp/corral_bench_1GiB.bin),
# CORRAL_BENCH_ONLY (e.g. "2" or "1,3": run only those benchmarks).

Code.require_file("support.exs", __DIR__)

defmodule Corral.Bench do
  import Corral.BenchSupport
  @kib 1024
  @mib 1024 * 1024
  @gib 1024 * 1024 * 1024

  @bench_dir __DIR__
  @out_dir Path.join(__DIR__, "out")

  # The open_port flood is stopped early past this growth, so that an
  # unbounded mailbox cannot take the machine down.
  @flood_cap 4 * @gib

  def main do
    started = System.monotonic_time(:millisecond)
    header()

    benches = [
      {"1. Spawn latency", &spawn_latency/0},
      {"2. Throughput", &throughput/0},
      {"3. Flood memory", &flood_memory/0}
    ]

    results = run_selected(benches, "CORRAL_BENCH_ONLY")

    verdict(results)
    secs = (System.monotonic_time(:millisecond) - started) / 1000
    IO.puts("\nTotal time: #{fmt(secs, 1)} s")
  end

  # Runs one benchmark; a failure is printed and does not stop the others.
  ## Header

  defp header do
    {uname, 0} = System.cmd("uname", ["-srm"])

    cpu =
      case File.read("/proc/cpuinfo") do
        {:ok, info} ->
          case Regex.run(~r/^model name\s*:\s*(.+)$/m, info) do
            [_, model] -> model
            _ -> "unknown"
          end

        _ ->
          "unknown"
      end

    IO.puts("Corral benchmarks")

    IO.puts(
      "  machine: #{:erlang.system_info(:logical_processors_available)} CPUs (nproc), #{cpu}"
    )

    IO.puts("  kernel:  #{String.trim(uname)}, load average #{loadavg()} at start")

    IO.puts(
      "  OTP #{otp_version()} (ERTS #{:erlang.system_info(:version)}), Elixir #{System.version()}, " <>
        "#{System.schedulers_online()} schedulers, MIX_ENV=#{Mix.env()}"
    )
  end

  ## C baselines

  defp c_program(name) do
    src = Path.join([@bench_dir, "c", name <> ".c"])
    bin = Path.join(@out_dir, name)
    File.mkdir_p!(@out_dir)

    stale =
      case {File.stat(bin), File.stat(src)} do
        {{:ok, b}, {:ok, s}} -> b.mtime < s.mtime
        _ -> true
      end

    if stale do
      case System.cmd("cc", ["-O2", "-Wall", "-o", bin, src], stderr_to_stdout: true) do
        {_, 0} -> :ok
        {out, n} -> raise "cc #{src} failed (#{n}): #{out}"
      end
    end

    bin
  end

  # Runs a C baseline and parses its "key=value ..." line.
  defp run_c(bin, args) do
    case System.cmd(bin, args, stderr_to_stdout: true) do
      {out, 0} ->
        for [k, v] <- Regex.scan(~r/(\w+)=([\d.]+)/, out, capture: :all_but_first), into: %{} do
          {k, String.to_float(if String.contains?(v, "."), do: v, else: v <> ".0")}
        end

      {out, n} ->
        raise "#{Path.basename(bin)} #{Enum.join(args, " ")} exited #{n}: #{out}"
    end
  end

  ## 1. Spawn latency

  def spawn_latency do
    n = env_int("CORRAL_BENCH_SPAWN_RUNS", 300)
    warmup = 20
    prog = "/bin/true"

    variants = [
      {"Corral.cmd/3", fn -> {"", 0} = Corral.cmd(prog, []) end},
      {"open_port + exit_status", fn -> 0 = open_port_true(prog) end},
      {"System.cmd/3", fn -> {"", 0} = System.cmd(prog, []) end}
    ]

    for _ <- 1..warmup, {_, f} <- variants, do: f.()

    # Interleaved rounds, so that drift hits every variant alike.
    samples =
      Enum.reduce(1..n, Map.new(variants, fn {name, _} -> {name, []} end), fn _, acc ->
        Enum.reduce(variants, acc, fn {name, f}, acc ->
          t0 = System.monotonic_time(:nanosecond)
          f.()
          dt = System.monotonic_time(:nanosecond) - t0
          Map.update!(acc, name, &[dt / 1000 | &1])
        end)
      end)

    stats = Map.new(samples, fn {name, xs} -> {name, percentiles(xs)} end)

    c =
      try do
        r = run_c(c_program("spawn_loop"), ["#{n}", "#{warmup}", prog])
        {:ok, {r["median_us"], r["p90_us"]}}
      rescue
        e -> {:error, Exception.message(e)}
      end

    {ref_med, _} = stats["open_port + exit_status"]

    rows =
      for {name, _} <- variants do
        {med, p90} = stats[name]
        [name, fmt(med, 0), fmt(p90, 0), ratio(med, ref_med)]
      end

    c_row =
      case c do
        {:ok, {med, p90}} ->
          ["C posix_spawn+waitpid", fmt(med, 0), fmt(p90, 0), ratio(med, ref_med)]

        {:error, msg} ->
          ["C posix_spawn+waitpid", "FAILED: #{msg}", "", ""]
      end

    IO.puts("#{n} runs of #{prog} each, after #{warmup} warm-ups; times in µs.")
    table(["variant", "median", "p90", "median / open_port"], rows ++ [c_row])

    {corral_med, _} = stats["Corral.cmd/3"]
    r = corral_med / ref_med

    {r <= 1.0,
     "spawn: Corral.cmd median #{fmt(corral_med, 0)} µs = #{fmt(r, 2)}× open_port " <>
       "(target ≤ 1.00×)"}
  end

  defp open_port_true(prog) do
    port = Port.open({:spawn_executable, prog}, [:exit_status, :binary])

    receive do
      {^port, {:exit_status, status}} -> status
    after
      10_000 -> raise "open_port #{prog}: no exit_status after 10 s"
    end
  end

  defp percentiles(xs) do
    sorted = xs |> Enum.sort() |> List.to_tuple()
    len = tuple_size(sorted)
    {elem(sorted, div(len, 2)), elem(sorted, div(len * 9, 10))}
  end

  ## 2. Throughput

  def throughput do
    file = System.get_env("CORRAL_BENCH_FILE", "/tmp/corral_bench_1GiB.bin")
    runs = env_int("CORRAL_BENCH_TP_RUNS", 5)
    ensure_file(file, @gib)
    cat = System.find_executable("cat") || raise "cat not found"
    pipe_read = c_program("pipe_read")

    # Warm the page cache, so that every variant reads from memory.
    _ = run_c(pipe_read, ["#{64 * @kib}", file])

    variants =
      [
        {"Corral default (#{size(default_window())})", :corral,
         fn -> corral_cat(cat, file, []) end}
      ] ++
        Enum.map([64 * @kib, @mib, 4 * @mib], fn w ->
          {"Corral window #{size(w)}", :corral, fn -> corral_cat(cat, file, window: w) end}
        end) ++
        [
          {"open_port :stream", :port, fn -> port_cat(cat, file) end},
          {"C pipe, 64 KiB reads", :c, fn -> c_cat(pipe_read, 64 * @kib, file) end},
          {"C pipe, 256 KiB reads", :c, fn -> c_cat(pipe_read, 256 * @kib, file) end},
          # The same pipe size as Corral's (pipe_size, 256 KiB): the fair baseline.
          {"C 256 KiB pipe + reads", :c, fn -> c_cat(pipe_read, 256 * @kib, file, 256 * @kib) end}
        ]

    # Interleaved rounds again; each run gives {bytes, seconds, messages}.
    rounds =
      for _ <- 1..runs do
        for {name, _, f} <- variants do
          {name, f.()}
        end
      end

    results =
      for {name, kind, _} <- variants do
        xs = for round <- rounds, {^name, r} <- round, do: r

        for {bytes, _, _} <- xs,
            bytes != @gib,
            do: raise("#{name}: read #{bytes} bytes, not #{@gib}")

        speeds = Enum.map(xs, fn {b, s, _} -> b / s / 1.0e6 end)
        msgs = xs |> Enum.map(fn {_, _, m} -> m end) |> median()
        {name, kind, Enum.max(speeds), median(speeds), msgs}
      end

    raw_c = for({_, :c, best, _, _} <- results, do: best) |> Enum.max()

    rows =
      for {name, _kind, best, med, msgs} <- results do
        chunk = if msgs, do: size(round(@gib / msgs)), else: "-"
        [name, fmt(best, 0), fmt(med, 0), ratio(best, raw_c), chunk]
      end

    IO.puts(
      "cat of a 1 GiB file (#{file}) to a byte counter; #{runs} interleaved runs, " <>
        "MB = 10^6 B;\nratio = best run / best raw C run; avg msg = bytes per message."
    )

    table(["variant", "best MB/s", "median MB/s", "vs raw C", "avg msg"], rows)

    corral = for {name, :corral, best, _, _} <- results, do: {name, best}
    {best_name, best} = Enum.max_by(corral, &elem(&1, 1))
    {_, default} = hd(corral)
    r = default / raw_c

    IO.puts(
      "Best Corral window: #{best_name} at #{fmt(best, 0)} MB/s (#{ratio(best, raw_c)} raw C)."
    )

    {r >= 0.9,
     "throughput: Corral default window #{fmt(default, 0)} MB/s = #{fmt(r, 2)}× raw C " <>
       "(target ≥ 0.90×); best window: #{best_name}"}
  end

  defp ensure_file(file, bytes) do
    case File.stat(file) do
      {:ok, %{size: ^bytes}} ->
        :ok

      _ ->
        IO.puts("Creating #{file} (#{size(bytes)}) ...")
        block = :crypto.strong_rand_bytes(@mib)

        File.open!(file, [:write, :binary, :raw], fn f ->
          for _ <- 1..div(bytes, @mib), do: :ok = IO.binwrite(f, block)
        end)
    end
  end

  defp corral_cat(cat, file, opts) do
    t0 = System.monotonic_time(:nanosecond)
    {:ok, port} = :corral.open(cat, [file], opts)
    {bytes, msgs} = corral_count(port, 0, 0)
    {bytes, (System.monotonic_time(:nanosecond) - t0) / 1.0e9, msgs}
  end

  defp corral_count(port, bytes, msgs) do
    receive do
      {^port, {:data, :stdout, bin}} ->
        :corral.ack(port, byte_size(bin))
        corral_count(port, bytes + byte_size(bin), msgs + 1)

      {^port, {:data, :stderr, bin}} ->
        :corral.ack(port, byte_size(bin))
        corral_count(port, bytes, msgs)

      {^port, {:exit_status, 0}} ->
        {bytes, msgs}

      {^port, other} when elem(other, 0) in [:exit_status, :exit_signal, :error] ->
        raise "Corral cat ended with #{inspect(other)}"
    after
      30_000 -> raise "Corral cat: no message for 30 s"
    end
  end

  defp port_cat(cat, file) do
    t0 = System.monotonic_time(:nanosecond)

    port = Port.open({:spawn_executable, cat}, [:binary, :exit_status, {:args, [file]}, :stream])

    {bytes, msgs} = port_count(port, 0, 0)
    {bytes, (System.monotonic_time(:nanosecond) - t0) / 1.0e9, msgs}
  end

  defp port_count(port, bytes, msgs) do
    receive do
      {^port, {:data, bin}} -> port_count(port, bytes + byte_size(bin), msgs + 1)
      {^port, {:exit_status, 0}} -> {bytes, msgs}
      {^port, {:exit_status, n}} -> raise "open_port cat exited #{n}"
    after
      30_000 -> raise "open_port cat: no message for 30 s"
    end
  end

  defp c_cat(pipe_read, buf, file, pipe_size \\ nil) do
    r = run_c(pipe_read, ["#{buf}", file] ++ if(pipe_size, do: ["#{pipe_size}"], else: []))
    {round(r["bytes"]), r["seconds"], nil}
  end

  ## 3. Flood memory

  def flood_memory do
    ms = env_int("CORRAL_BENCH_FLOOD_MS", 5000)
    yes = System.find_executable("yes") || raise "yes not found"
    limit = default_window() + @mib

    corral = flood(:corral, yes, ms)
    port = flood(:open_port, yes, ms)

    rows =
      for {name, r} <- [{"Corral (never acks)", corral}, {"open_port (never reads)", port}] do
        [
          name,
          fmt(r.seconds, 1),
          size(r.growth),
          size(r.peak),
          size(r.owner_memory),
          "#{r.queue_len}",
          size(r.produced),
          if(r.pid_gone, do: "yes", else: "NO")
        ]
      end

    IO.puts(
      "`yes` with an owner that never reads, for #{ms} ms; growth of :erlang.memory(:total)."
    )

    table(
      [
        "variant",
        "secs",
        "growth",
        "peak",
        "owner mem",
        "owner queue",
        "read from pipe",
        "yes dead"
      ],
      rows
    )

    IO.puts(
      "Growth at each second: Corral #{curve(corral.samples)}\n" <>
        "                       open_port #{curve(port.samples)}"
    )

    if port.capped,
      do: IO.puts("(open_port stopped early at #{size(@flood_cap)} growth, to spare the machine)")

    IO.puts(
      "Corral growth = #{ratio(corral.peak, limit)} of its limit (window #{size(default_window())} + 1 MiB); " <>
        "open_port grew #{ratio(port.peak, max(corral.peak, 1))} as much as Corral."
    )

    unless corral.pid_gone and port.pid_gone, do: raise("a `yes` survived its port")

    {corral.peak <= limit,
     "flood: Corral grew #{size(corral.peak)} in #{fmt(corral.seconds, 1)} s " <>
       "(target ≤ #{size(limit)}); open_port grew #{size(port.peak)} in #{fmt(port.seconds, 1)} s"}
  end

  defp flood(kind, yes, ms) do
    parent = self()
    :erlang.garbage_collect()
    Process.sleep(200)
    mem0 = :erlang.memory(:total)

    owner =
      spawn(fn ->
        port =
          case kind do
            :corral ->
              {:ok, port} = :corral.open(yes, [], [])
              port

            :open_port ->
              Port.open({:spawn_executable, yes}, [:binary])
          end

        send(parent, {:flood_port, self(), port})

        case kind do
          # The mailbox stays small, so this selective receive stays cheap.
          :corral ->
            receive do
              :stop -> send(parent, {:flood_stopped, self(), :corral.stop(port)})
            end

          # Never looks at its mailbox; killed by the parent.
          :open_port ->
            Process.sleep(:infinity)
        end
      end)

    mref = Process.monitor(owner)

    port =
      receive do
        {:flood_port, ^owner, port} -> port
        {:DOWN, ^mref, _, _, reason} -> raise "#{kind} owner died: #{inspect(reason)}"
      after
        10_000 -> raise "#{kind}: port not opened after 10 s"
      end

    os_pid =
      case kind do
        :corral ->
          {:ok, pid} = :corral.os_pid(port)
          pid

        :open_port ->
          {:os_pid, pid} = Port.info(port, :os_pid)
          pid
      end

    t0 = System.monotonic_time(:millisecond)
    {samples, capped} = sample_memory(mem0, t0, ms, [])
    seconds = (System.monotonic_time(:millisecond) - t0) / 1000
    growth = :erlang.memory(:total) - mem0
    info = Process.info(owner, [:memory, :message_queue_len]) || [memory: 0, message_queue_len: 0]

    produced =
      case kind do
        :corral ->
          case :corral.stats(port) do
            {:ok, %{bytes_out: b}} -> b
            _ -> 0
          end

        :open_port ->
          case Port.info(port, :input) do
            {:input, b} -> b
            _ -> 0
          end
      end

    # Stop: Corral through :corral.stop/1 by the owner (it drains the
    # mailbox); open_port by killing the OS pid and the owner, whose death
    # closes the port.
    case kind do
      :corral ->
        send(owner, :stop)

        receive do
          {:flood_stopped, ^owner, _terminal} -> :ok
        after
          10_000 -> raise "corral.stop did not return within 10 s"
        end

      # SIGKILL first, so that `yes` does not print "Broken pipe".
      :open_port ->
        _ = System.cmd("kill", ["-KILL", "#{os_pid}"], stderr_to_stdout: true)
        Process.exit(owner, :kill)
    end

    receive do
      {:DOWN, ^mref, _, _, _} -> :ok
    after
      10_000 -> raise "#{kind} owner still alive 10 s after stop"
    end

    %{
      seconds: seconds,
      growth: growth,
      peak: samples |> Enum.map(&elem(&1, 1)) |> Enum.max(fn -> growth end) |> max(growth),
      samples: Enum.reverse(samples),
      owner_memory: info[:memory],
      queue_len: info[:message_queue_len],
      produced: produced,
      capped: capped,
      pid_gone: wait_gone(os_pid, 50)
    }
  end

  defp sample_memory(mem0, t0, ms, acc) do
    Process.sleep(100)
    elapsed = System.monotonic_time(:millisecond) - t0
    growth = :erlang.memory(:total) - mem0
    acc = [{elapsed, growth} | acc]

    cond do
      growth > @flood_cap -> {acc, true}
      elapsed >= ms -> {acc, false}
      true -> sample_memory(mem0, t0, ms, acc)
    end
  end

  # Growth at each whole second of the run.
  defp curve(samples) do
    samples
    |> Enum.chunk_by(fn {t, _} -> div(t, 1000) end)
    |> Enum.map(fn chunk -> chunk |> List.last() |> elem(1) |> size() end)
    |> Enum.join(" → ")
  end

  defp wait_gone(_pid, 0), do: false

  defp wait_gone(pid, tries) do
    if File.exists?("/proc/#{pid}") and not zombie?(pid) do
      Process.sleep(100)
      wait_gone(pid, tries - 1)
    else
      true
    end
  end

  defp zombie?(pid) do
    case File.read("/proc/#{pid}/stat") do
      {:ok, stat} -> stat |> String.split(") ") |> List.last() |> String.starts_with?("Z")
      _ -> true
    end
  end

  # The default credit window, as corral_opts fills it in.
  defp default_window do
    {:ok, %{window: w}} = :corral_opts.normalize("/bin/true", [], [], :corral_opts.spawn_keys())

    w
  end

  ## Formatting

  defp size(b) when b < 0, do: "-" <> size(-b)
  defp size(b) when b >= @gib, do: fmt(b / @gib, 2) <> " GiB"
  defp size(b) when b >= @mib, do: fmt(b / @mib, 1) <> " MiB"
  defp size(b) when b >= @kib, do: fmt(b / @kib, 0) <> " KiB"
  defp size(b), do: "#{b} B"

  defp median([]), do: nil
  defp median([nil | _]), do: nil

  defp median(xs) do
    sorted = Enum.sort(xs)
    Enum.at(sorted, div(length(sorted), 2))
  end
end

Corral.Bench.main()
