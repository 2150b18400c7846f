# What the scenarios share: sizes, timing and statistics, the C and C++
# baselines, /proc readings, and printing.
defmodule Bench do
  @moduledoc false
  @kib 1024
  @mib 1024 * 1024
  @gib 1024 * 1024 * 1024
  @out Path.expand("out", __DIR__)

  def out_dir, do: @out

  @doc "The full-run figure, or the short one under CORRAL_BENCH_QUICK (smoke runs)."
  def n(full, quick), do: if(quick?(), do: quick, else: full)
  def quick?, do: System.get_env("CORRAL_BENCH_QUICK", "") not in ["", "0"]

  @doc "Runs `fun` once per run of the harness; scenarios that read one measurement share it."
  def once(key, fun) do
    case Process.get({:bench_once, key}) do
      nil ->
        r =
          try do
            {:ok, fun.()}
          rescue
            e -> {:raise, e, __STACKTRACE__}
          end

        Process.put({:bench_once, key}, r)
        once(key, fun)

      {:ok, v} ->
        v

      {:raise, e, st} ->
        reraise e, st
    end
  end

  ## Timing and statistics

  def now_ns, do: System.monotonic_time(:nanosecond)

  def time_us(f) do
    t0 = now_ns()
    f.()
    (now_ns() - t0) / 1000
  end

  @doc "The p-th percentile (0..100) of `xs`, nearest rank below."
  def pct(xs, p) do
    s = xs |> Enum.sort() |> List.to_tuple()
    elem(s, min(tuple_size(s) - 1, div(tuple_size(s) * p, 100)))
  end

  def median(xs), do: pct(xs, 50)

  @doc "Median wall time of `n` sequential calls of `f`, in µs."
  def median_us(f, n \\ 200), do: median(for _ <- 1..n, do: time_us(f))

  @doc """
  Runs `rounds` rounds of every `{name, fun}` in turn, so that drift hits
  every variant alike, and returns `%{name => [result]}` in round order.
  """
  def interleave(variants, rounds) do
    rs = for _ <- 1..rounds, {name, f} <- variants, do: {name, f.()}
    Map.new(variants, fn {name, _} -> {name, for({^name, r} <- rs, do: r)} end)
  end

  @doc "The default credit window, as corral_opts fills it in."
  def default_window do
    {:ok, %{window: w}} = :corral_opts.normalize("/bin/true", [], [], :corral_opts.spawn_keys())
    w
  end

  ## Spawning /bin/true, the unit of the spawn scenarios: true or {:error, why}

  def corral_true do
    case :corral.cmd("/bin/true", []) do
      {"", 0} -> true
      other -> {:error, other}
    end
  end

  def port_true do
    p = Port.open({:spawn_executable, "/bin/true"}, [:exit_status, :binary])

    receive do
      {^p, {:exit_status, 0}} -> true
      {^p, {:exit_status, n}} -> {:error, {:exit_status, n}}
    after
      10_000 -> {:error, :no_exit_status}
    end
  end

  ## C and C++ baselines, built from bench/c/ into bench/out/

  def baseline(name) do
    [src] = Path.wildcard(Path.expand("c/#{name}.{c,cpp}", __DIR__))
    bin = Path.join(@out, name)
    File.mkdir_p!(@out)

    if not File.exists?(bin) or File.stat!(bin).mtime < File.stat!(src).mtime do
      {cc, flags} =
        if String.ends_with?(src, ".cpp"), do: {"c++", ["-std=c++17"]}, else: {"cc", []}

      case System.cmd(cc, flags ++ ["-O2", "-Wall", "-Wextra", "-o", bin, src],
             stderr_to_stdout: true
           ) do
        {_, 0} -> :ok
        {out, n} -> raise "#{cc} #{src} failed (#{n}): #{out}"
      end
    end

    bin
  end

  @doc "Runs a baseline and returns its `key=value` output as `%{key => float}`."
  def run_baseline(name, args) do
    case System.cmd(baseline(name), args, stderr_to_stdout: true) do
      {out, 0} ->
        for [k, v] <- Regex.scan(~r/(\w+)=([\d.]+)/, out, capture: :all_but_first),
            into: %{},
            do: {k, elem(Float.parse(v), 0)}

      {out, n} ->
        raise "#{name} #{Enum.join(args, " ")} exited #{n}: #{out}"
    end
  end

  @doc "A file of `bytes` random bytes in bench/out/, made once."
  def data_file(bytes) do
    path = Path.join(@out, "data_#{div(bytes, @mib)}MiB.bin")

    unless match?({:ok, %{size: ^bytes}}, File.stat(path)) do
      IO.puts("Creating #{path} ...")
      File.mkdir_p!(@out)
      block = :crypto.strong_rand_bytes(@mib)

      File.open!(path, [:write, :binary, :raw], fn f ->
        for _ <- 1..div(bytes, @mib), do: :ok = IO.binwrite(f, block)
      end)
    end

    path
  end

  ## /proc

  def stat(pid) do
    case :prim_file.read_file(~c"/proc/#{pid}/stat") do
      {:ok, bin} ->
        # comm may hold spaces and parentheses; it ends at the last ") ".
        parts = :binary.split(bin, ") ", [:global])
        [_pid, comm] = :binary.split(Enum.join(Enum.drop(parts, -1), ") "), " (")
        [state, ppid | _] = f = String.split(List.last(parts), " ")
        t = fn i -> String.to_integer(Enum.at(f, i)) end

        %{
          comm: comm,
          state: state,
          ppid: String.to_integer(ppid),
          cpu: t.(11) + t.(12),
          children_cpu: t.(13) + t.(14)
        }

      _ ->
        nil
    end
  end

  @doc "Alive: running `comm`, not a zombie (a reused pid running another program is dead)."
  def alive?(pid, comm), do: match?(%{comm: ^comm, state: s} when s != "Z", stat(pid))

  def fd_count(pid) do
    {:ok, l} = :file.list_dir(~c"/proc/#{pid}/fd")
    length(l)
  end

  def rss(pid) do
    [_, kb] = Regex.run(~r/^VmRSS:\s+(\d+) kB/m, File.read!("/proc/#{pid}/status"))
    String.to_integer(kb) * @kib
  end

  def nofile_limit(pid) do
    [_, soft] = Regex.run(~r/^Max open files\s+(\d+)/m, File.read!("/proc/#{pid}/limits"))
    String.to_integer(soft)
  end

  @doc "Live processes named `comm` whose parent is `ppid`."
  def live_children(ppid, comm) do
    {:ok, names} = :file.list_dir(~c"/proc")

    for name <- names,
        {pid, ""} <- [Integer.parse(to_string(name))],
        match?(%{comm: ^comm, ppid: ^ppid, state: s} when s != "Z", stat(pid)),
        do: pid
  end

  @doc "The VM's one child named `comm` (corral_spawner, erl_child_setup)."
  def vm_child(comm) do
    case live_children(String.to_integer(to_string(:os.getpid())), comm) do
      [pid] -> pid
      pids -> raise "expected one #{comm} under the VM, found #{inspect(pids)}"
    end
  end

  @doc """
  Waits until none of `pids` runs `comm`, checking the oldest survivor every
  `poll_us` (sleeping from 1 ms up, spinning below). Returns `{:ok, µs since
  t0}` or `{:timeout, survivors}`.
  """
  def wait_dead(pids, comm, t0, poll_us, deadline_ms),
    do: wait_dead_(pids, comm, t0, poll_us, t0 + deadline_ms * 1_000_000)

  defp wait_dead_([], _, t0, _, _), do: {:ok, (now_ns() - t0) / 1000}

  defp wait_dead_([pid | rest] = pids, comm, t0, poll_us, deadline) do
    cond do
      not alive?(pid, comm) ->
        wait_dead_(rest, comm, t0, poll_us, deadline)

      now_ns() > deadline ->
        {:timeout, Enum.filter(pids, &alive?(&1, comm))}

      true ->
        if poll_us >= 1000,
          do: Process.sleep(div(poll_us, 1000)),
          else: spin_until(now_ns() + poll_us * 1000)

        wait_dead_(pids, comm, t0, poll_us, deadline)
    end
  end

  defp spin_until(t) do
    if now_ns() < t do
      :erlang.yield()
      spin_until(t)
    end
  end

  def kill_pids(pids) do
    for chunk <- Enum.chunk_every(pids, 500),
        do: System.cmd("kill", ["-KILL" | Enum.map(chunk, &to_string/1)], stderr_to_stdout: true)

    :ok
  end

  @doc "`:erlang.memory(:total)` once the port count has settled, after two GC rounds."
  def vm_memory(ports \\ -1, tries \\ 20) do
    Process.sleep(50)
    now = length(Port.list())

    if now != ports and tries > 0 do
      vm_memory(now, tries - 1)
    else
      for _ <- 1..2 do
        Enum.each(Process.list(), &:erlang.garbage_collect/1)
        Process.sleep(20)
      end

      :erlang.memory(:total)
    end
  end

  ## Printing

  @doc "Prints a table (headers \"a|b|c\"): the first column left-aligned, the others right-aligned."
  def table(headers, rows) do
    headers = String.split(headers, "|")
    rows = Enum.map(rows, fn r -> Enum.map(r, &to_string/1) end)

    widths =
      Enum.reduce([headers | rows], List.duplicate(0, length(headers)), fn row, ws ->
        Enum.zip_with(row, ws, &max(String.length(&1), &2))
      end)

    line = fn row ->
      Enum.zip(row, widths)
      |> Enum.with_index()
      |> Enum.map_join("  ", fn
        {{cell, w}, 0} -> String.pad_trailing(cell, w)
        {{cell, w}, _} -> String.pad_leading(cell, w)
      end)
    end

    IO.puts("  " <> line.(headers))
    IO.puts("  " <> Enum.map_join(widths, "  ", &String.duplicate("-", &1)))
    Enum.each(rows, &IO.puts("  " <> line.(&1)))
  end

  def ratio(_, ref) when ref == 0, do: "-"
  def ratio(x, ref), do: fmt(x / ref, 2) <> "×"

  def fmt(x, 0), do: x |> round() |> Integer.to_string()
  def fmt(x, d), do: :erlang.float_to_binary(x / 1, decimals: d)

  @doc "10000 as \"10,000\"."
  def count(n), do: n |> Integer.to_string() |> String.replace(~r/\B(?=(\d{3})+$)/, ",")

  def size(b) when b < 0, do: "-" <> size(-b)
  def size(b) when b >= @gib, do: fmt(b / @gib, 2) <> " GiB"
  def size(b) when b >= @mib, do: fmt(b / @mib, 1) <> " MiB"
  def size(b) when b >= @kib, do: fmt(b / @kib, 1) <> " KiB"
  def size(b), do: "#{round(b)} B"
end
