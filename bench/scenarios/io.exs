# Moving bytes: reading a 1 GiB file through `cat`, writing 1 GiB into
# `cat > /dev/null`, and 4 KiB round trips.
defmodule Bench.IO do
  @moduledoc false
  import Bench
  @kib 1024
  @mib 1024 * 1024
  @gib 1024 * 1024 * 1024

  def bytes, do: n(@gib, 64 * @mib)
  defp cat, do: System.find_executable("cat") || raise("cat not found")

  ## cat of a file with :corral.open/3 (several windows), open_port and C

  def cat_file do
    file = data_file(bytes())
    runs = n(5, 1)
    # Warm the page cache, so that every variant reads from memory.
    run_baseline("pipe_read", ["#{64 * @kib}", file])

    variants =
      [{"Corral default (#{size(default_window())})", :corral, []}] ++
        for(
          w <- [64 * @kib, @mib, 4 * @mib],
          do: {"Corral window #{size(w)}", :corral, [window: w]}
        ) ++
        [
          {"open_port :stream", :port, nil},
          {"C pipe, 64 KiB reads", :c, [64 * @kib]},
          {"C pipe, 256 KiB reads", :c, [256 * @kib]},
          # The same pipe size as Corral's (pipe_size, 256 KiB): the fair baseline.
          {"C 256 KiB pipe + reads", :c, [256 * @kib, 256 * @kib]}
        ]

    # Each run gives {bytes, seconds, messages}.
    rounds =
      interleave(
        for({name, kind, arg} <- variants, do: {name, fn -> cat_once(kind, arg, file) end}),
        runs
      )

    results =
      for {name, kind, _} <- variants do
        xs = rounds[name]
        for {b, _, _} <- xs, b != bytes(), do: raise("#{name}: read #{b} bytes, not #{bytes()}")
        mbps = for {b, s, _} <- xs, do: b / s / 1.0e6
        {name, kind, Enum.max(mbps), median(mbps), median(for {_, _, m} <- xs, do: m)}
      end

    raw_c = Enum.max(for {_, :c, best, _, _} <- results, do: best)
    [{_, _, default, _, _} | _] = results
    {_, _, port, _, _} = List.keyfind(results, :port, 1)

    IO.puts(
      "#{size(bytes())} file to a byte counter; #{runs} interleaved runs; ratio = best run / best raw C run."
    )

    table(
      "variant|best MB/s|median MB/s|vs raw C|avg msg",
      for {name, _, best, med, msgs} <- results do
        [
          name,
          fmt(best, 0),
          fmt(med, 0),
          ratio(best, raw_c),
          if(msgs, do: size(bytes() / msgs), else: "-")
        ]
      end
    )

    {best_name, _, best, _, _} =
      results |> Enum.filter(&(elem(&1, 1) == :corral)) |> Enum.max_by(&elem(&1, 2))

    IO.puts(
      "Best Corral window: #{best_name} at #{fmt(best, 0)} MB/s (#{ratio(best, raw_c)} raw C)."
    )

    %{corral: default, baselines: [raw_c, port]}
  end

  defp cat_once(:corral, opts, file) do
    t0 = now_ns()
    {:ok, port} = :corral.open(cat(), [file], opts)
    {b, msgs} = corral_count(port, 0, 0)
    {b, (now_ns() - t0) / 1.0e9, msgs}
  end

  defp cat_once(:port, nil, file) do
    t0 = now_ns()
    port = Port.open({:spawn_executable, cat()}, [:binary, :exit_status, :stream, args: [file]])
    {b, msgs} = port_count(port, 0, 0)
    {b, (now_ns() - t0) / 1.0e9, msgs}
  end

  defp cat_once(:c, [buf | pipe], file) do
    r = run_baseline("pipe_read", ["#{buf}", file | Enum.map(pipe, &to_string/1)])
    {round(r["bytes"]), r["seconds"], nil}
  end

  defp corral_count(port, b, msgs) do
    receive do
      {^port, {:data, fd, bin}} ->
        :corral.ack(port, byte_size(bin))

        if fd == :stdout,
          do: corral_count(port, b + byte_size(bin), msgs + 1),
          else: corral_count(port, b, msgs)

      {^port, {:exit_status, 0}} ->
        {b, msgs}

      {^port, other} when elem(other, 0) in [:exit_status, :exit_signal, :error] ->
        raise "Corral cat ended with #{inspect(other)}"
    after
      30_000 -> raise "Corral cat: no message for 30 s"
    end
  end

  defp port_count(port, b, msgs) do
    receive do
      {^port, {:data, bin}} -> port_count(port, b + byte_size(bin), msgs + 1)
      {^port, {:exit_status, 0}} -> {b, msgs}
      {^port, {:exit_status, n}} -> raise "open_port cat exited #{n}"
    after
      30_000 -> raise "open_port cat: no message for 30 s"
    end
  end

  ## Corral.stream!/3 and Corral.Process.write/2: best of 3, one variant after the other

  def stream do
    file = data_file(bytes())
    {_, 0} = System.cmd("sh", ["-c", "cat \"$0\" > /dev/null", file])
    Corral.stream!("true", []) |> Stream.run()

    # Same pipe size as Corral's children get (pipe_size, 256 KiB).
    c = best_mbps(fn -> run_baseline("pipe_read", ["262144", file, "262144"])["seconds"] end)
    b = bytes()

    corral =
      best_mbps(fn ->
        timed(fn -> ^b = Enum.reduce(Corral.stream!("cat", [file]), 0, &(byte_size(&1) + &2)) end)
      end)

    port = best_mbps(fn -> timed(fn -> {^b, _, _} = cat_once(:port, nil, file) end) end)

    mbps_table("read #{size(bytes())} of `cat FILE`", [
      {"raw C read(2), 256 KiB pipe", c},
      {"Corral.stream!/3", corral},
      {"open_port(:stream)", port}
    ])

    %{corral: corral, baselines: [c, port]}
  end

  def write do
    mib = div(bytes(), @mib)
    c = best_mbps(fn -> run_baseline("pipe_write", ["#{mib}"])["seconds"] end)
    corral = best_mbps(fn -> timed(fn -> process_write(mib) end) end)

    mbps_table("write #{size(bytes())} into `cat > /dev/null`", [
      {"raw C write(2), 1 MiB, 256 KiB pipe", c},
      {"Corral.Process.write/2, 1 MiB", corral}
    ])

    %{corral: corral, baselines: [c]}
  end

  defp process_write(mib) do
    chunk = :binary.copy("x", @mib)
    {:ok, p} = Corral.Process.start("sh", ["-c", "cat > /dev/null"])
    for _ <- 1..mib, do: :ok = Corral.Process.write(p, chunk)
    :ok = Corral.Process.close_stdin(p)
    {:ok, 0} = Corral.Process.await_exit(p, :infinity)
    Corral.Process.stop(p)
  end

  defp timed(f), do: time_us(f) / 1.0e6
  defp best_mbps(secs), do: bytes() / Enum.min(for(_ <- 1..n(3, 1), do: secs.())) / 1.0e6

  defp mbps_table(title, [{_, base} | _] = rows) do
    IO.puts(title <> ", best of #{n(3, 1)}")

    table(
      "variant|MB/s|vs first",
      for({name, v} <- rows, do: [name, fmt(v, 0), ratio(v, base)])
    )
  end

  ## 4 KiB request/response through `cat`

  @request :binary.copy("z", 4095) <> "\n"

  def round_trip do
    rounds = n(2000, 100)
    {:ok, p} = Corral.Process.start("cat", [])

    corral =
      for _ <- 1..rounds,
          do:
            time_us(fn ->
              :ok = Corral.Process.write(p, @request)
              read_n(p, 4096)
            end)

    Corral.Process.stop(p)
    port = Port.open({:spawn_executable, cat()}, [:binary, :stream])

    open_port =
      for _ <- 1..rounds,
          do:
            time_us(fn ->
              true = Port.command(port, @request)
              port_read_n(port, 4096)
            end)

    Port.close(port)
    IO.puts("#{rounds} rounds each; µs.")

    table(
      "variant|median|p99",
      for(
        {name, ts} <- [{"open_port(:stream)", open_port}, {"Corral.Process write/read", corral}],
        do: [name, fmt(median(ts), 1), fmt(pct(ts, 99), 1)]
      )
    )

    %{corral: median(corral), baselines: [median(open_port)]}
  end

  defp read_n(_p, left) when left <= 0, do: :ok

  defp read_n(p, left) do
    {:ok, bin} = Corral.Process.read(p, 5000)
    read_n(p, left - byte_size(bin))
  end

  defp port_read_n(_port, left) when left <= 0, do: :ok

  defp port_read_n(port, left) do
    receive do
      {^port, {:data, bin}} -> port_read_n(port, left - byte_size(bin))
    after
      5000 -> raise "no reply from cat"
    end
  end
end
