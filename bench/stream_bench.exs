# Streaming benchmarks: Corral.stream!/3 and Corral.Process against a raw C
# pipe and a plain Erlang port, side by side.
#
#   mix run bench/stream_bench.exs [SIZE_MIB]      (default 1024)
#
# 1. Read SIZE_MIB of `cat FILE`: stream!, a raw C read(2) loop
#    (bench/c/pipe_read.c), and an open_port(:stream) reader.
# 2. Write SIZE_MIB into `cat > /dev/null`: Corral.Process.write/2 against a C
#    writer (bench/c/pipe_write.c), both built into bench/out/.
# 3. 4 KiB request/response through `cat`: median latency, Corral.Process
#    against open_port.
#
# The C helpers and the data file live in bench/out/ (git-ignored).

defmodule StreamBench do
  @out Path.expand("out", __DIR__)
  @mib 1024 * 1024

  def run(mib) do
    File.mkdir_p!(@out)
    reader = build("pipe_read", File.read!(Path.expand("c/pipe_read.c", __DIR__)))
    writer = build("pipe_write", File.read!(Path.expand("c/pipe_write.c", __DIR__)))
    file = data_file(mib)
    bytes = mib * @mib

    IO.puts("Corral stream benchmarks: #{mib} MiB, best of 3, MB = 10^6 bytes\n")

    # Warm up the page cache and the driver.
    {_, 0} = System.cmd("sh", ["-c", "cat \"$0\" > /dev/null", file])
    Corral.stream!("true", []) |> Stream.run()

    # Same pipe size as Corral's children get (pipe_size, 256 KiB).
    c_read = best(fn -> c_seconds(reader, ["262144", file, "262144"]) end)
    stream_read = best(fn -> time(fn -> stream_read(file, bytes) end) end)
    port_read = best(fn -> time(fn -> port_read(file, bytes) end) end)

    table("read #{mib} MiB of `cat FILE`", bytes, [
      {"raw C read(2), 256 KiB pipe", c_read},
      {"Corral.stream!/3", stream_read},
      {"open_port(:stream)", port_read}
    ])

    c_write = best(fn -> c_seconds(writer, ["#{mib}"]) end)
    proc_write = best(fn -> time(fn -> process_write(mib) end) end)

    table("write #{mib} MiB into `cat > /dev/null`", bytes, [
      {"raw C write(2), 1 MiB, 256 KiB pipe", c_write},
      {"Corral.Process.write/2, 1 MiB", proc_write}
    ])

    rounds = 2000
    corral_rt = process_round_trip(rounds)
    port_rt = port_round_trip(rounds)

    IO.puts("4 KiB request/response through `cat`, #{rounds} rounds, median (p99)")
    IO.puts("  #{pad("open_port(:stream)", 34)} #{us(port_rt)}")

    IO.puts(
      "  #{pad("Corral.Process write/read", 34)} #{us(corral_rt)}  #{ratio(port_rt, corral_rt)}x"
    )
  end

  # --- read ---------------------------------------------------------------

  defp stream_read(file, bytes) do
    ^bytes = Corral.stream!("cat", [file]) |> Enum.reduce(0, &(byte_size(&1) + &2))
  end

  defp port_read(file, bytes) do
    port =
      Port.open({:spawn_executable, System.find_executable("cat")}, [
        :binary,
        :stream,
        :exit_status,
        args: [file]
      ])

    ^bytes = port_loop(port, 0)
  end

  defp port_loop(port, n) do
    receive do
      {^port, {:data, bin}} -> port_loop(port, n + byte_size(bin))
      {^port, {:exit_status, 0}} -> n
    end
  end

  # --- write --------------------------------------------------------------

  defp process_write(mib) do
    chunk = :binary.copy("x", @mib)
    {:ok, p} = Corral.Process.start("sh", ["-c", "cat > /dev/null"])
    for _ <- 1..mib, do: :ok = Corral.Process.write(p, chunk)
    :ok = Corral.Process.close_stdin(p)
    {:ok, 0} = Corral.Process.await_exit(p, :infinity)
    Corral.Process.stop(p)
  end

  # --- round trip ---------------------------------------------------------

  @request :binary.copy("z", 4095) <> "\n"

  defp process_round_trip(rounds) do
    {:ok, p} = Corral.Process.start("cat", [])

    times =
      for _ <- 1..rounds do
        t0 = System.monotonic_time(:nanosecond)
        :ok = Corral.Process.write(p, @request)
        read_n(p, 4096)
        System.monotonic_time(:nanosecond) - t0
      end

    Corral.Process.stop(p)
    times
  end

  defp read_n(_p, 0), do: :ok

  defp read_n(p, left) do
    {:ok, bin} = Corral.Process.read(p, 5000)
    read_n(p, left - byte_size(bin))
  end

  defp port_round_trip(rounds) do
    port = Port.open({:spawn_executable, System.find_executable("cat")}, [:binary, :stream])

    times =
      for _ <- 1..rounds do
        t0 = System.monotonic_time(:nanosecond)
        true = Port.command(port, @request)
        port_read_n(port, 4096)
        System.monotonic_time(:nanosecond) - t0
      end

    Port.close(port)
    times
  end

  defp port_read_n(_port, 0), do: :ok

  defp port_read_n(port, left) do
    receive do
      {^port, {:data, bin}} -> port_read_n(port, left - byte_size(bin))
    after
      5000 -> raise "no reply from cat"
    end
  end

  # --- helpers ------------------------------------------------------------

  defp build(name, source) do
    src = Path.join(@out, name <> ".c")
    bin = Path.join(@out, name)

    if File.read(src) != {:ok, source} or not File.exists?(bin) do
      File.write!(src, source)
      {_, 0} = System.cmd("cc", ["-O2", "-o", bin, src], stderr_to_stdout: true)
    end

    bin
  end

  defp data_file(mib) do
    path = Path.join(@out, "stream_#{mib}m.bin")

    unless File.exists?(path) and File.stat!(path).size == mib * @mib do
      block = :crypto.strong_rand_bytes(@mib)
      File.open!(path, [:write, :binary], fn f -> for _ <- 1..mib, do: IO.binwrite(f, block) end)
    end

    path
  end

  defp c_seconds(bin, args) do
    {out, 0} = System.cmd(bin, args)
    [_, secs] = Regex.run(~r/seconds=([0-9.]+)/, out)
    String.to_float(secs)
  end

  defp time(fun) do
    t0 = System.monotonic_time(:microsecond)
    fun.()
    (System.monotonic_time(:microsecond) - t0) / 1.0e6
  end

  defp best(fun), do: Enum.min(for _ <- 1..3, do: fun.())

  defp table(title, bytes, [{_, base} | _] = rows) do
    IO.puts(title)

    for {name, secs} <- rows do
      mbps = bytes / secs / 1.0e6

      IO.puts(
        "  #{pad(name, 34)} #{pad(:erlang.float_to_binary(mbps, decimals: 0), 6)} MB/s  #{ratio(base, secs)}x"
      )
    end

    IO.puts("")
  end

  # Throughput ratio against the baseline: base_time / time.
  defp ratio(time, base_time) when is_list(time), do: ratio(median(time), median(base_time))
  defp ratio(base_secs, secs), do: :erlang.float_to_binary(base_secs / secs, decimals: 2)

  defp us(times) do
    "#{Float.round(median(times) / 1000, 1)} us (#{Float.round(p99(times) / 1000, 1)} us)"
  end

  defp median(times), do: Enum.at(Enum.sort(times), div(length(times), 2))
  defp p99(times), do: Enum.at(Enum.sort(times), div(length(times) * 99, 100))
  defp pad(s, n), do: String.pad_trailing(s, n)
end

mib =
  case System.argv() do
    [n] -> String.to_integer(n)
    _ -> 1024
  end

StreamBench.run(mib)
