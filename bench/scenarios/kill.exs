# How fast a 7-process tree (test/fixtures/bin/tree 2 2: one process group,
# default SIGTERM action) is gone once its owner is killed, and how long
# :corral.stop/1 takes. open_port has no equivalent: a closed port's children
# keep running (see the sleeps scenarios).
defmodule Bench.Kill do
  @moduledoc false
  import Bench

  @tree Path.expand("../../test/fixtures/bin/tree", __DIR__)

  @doc """
  Owner killed -> all 7 pids gone, polling /proc every 1 ms (sleeping) and,
  printed beside it, every 0.2 ms (spinning, which keeps one scheduler busy
  while the port closes and the spawner works: the benchmark's own tail).
  """
  def kill_latency do
    for _ <- 1..3, do: trial({:kill, 1000})
    kill = trials({:kill, 1000})
    spin = trials({:kill, 200})

    kill_table([
      {"owner killed -> tree gone, 1 ms sleep polls", kill},
      {"the same, 0.2 ms spin polls", spin}
    ])

    for {name, r} <- [{"1 ms polls", kill}, {"0.2 ms spin polls", spin}],
        (slow = r.times |> Enum.filter(&(&1 > 5)) |> Enum.sort()) != [],
        do: IO.puts("#{name}: trials over 5 ms: #{Enum.map_join(slow, " ", &fmt(&1, 0))}")

    %{corral: median(kill.times), baselines: [], ok: kill.survivors + spin.survivors == 0}
  end

  @doc ":corral.stop/1 until it returns, then the 7 pids checked at once."
  def stop_latency do
    for _ <- 1..3, do: trial(:stop)
    stop = trials(:stop)
    kill_table([{":corral.stop/1 returns", stop}])
    IO.puts("Terminal messages: #{inspect(stop.terminals)}")
    %{corral: median(stop.times), baselines: [], ok: stop.survivors == 0}
  end

  defp kill_table(rows) do
    IO.puts(
      "`tree 2 2` (7 processes, one group, default SIGTERM action); ms. " <>
        "open_port has no equivalent: a closed port's children keep running."
    )

    table(
      "variant|trials|median|p90|max|over 20 ms|survivors",
      for {name, r} <- rows do
        [name, r.n | Enum.map([50, 90, 100], &fmt(pct(r.times, &1), 2))] ++
          ["#{Enum.count(r.times, &(&1 > 20))}/#{r.n}", r.survivors]
      end
    )
  end

  # 100 trials (10 in a quick run), or fewer if 20 s run out.
  defp trials(mode) do
    t_end = System.monotonic_time(:millisecond) + 20_000

    rs =
      Enum.reduce_while(1..n(100, 10), [], fn _, acc ->
        if System.monotonic_time(:millisecond) > t_end,
          do: {:halt, acc},
          else: {:cont, [trial(mode) | acc]}
      end)

    %{
      n: length(rs),
      times: Enum.map(rs, & &1.ms),
      survivors: Enum.sum(Enum.map(rs, & &1.survivors)),
      terminals: rs |> Enum.map(& &1.terminal) |> Enum.frequencies()
    }
  end

  defp trial(mode) do
    unless File.exists?(@tree), do: raise("#{@tree} missing (run `make fixtures`)")
    parent = self()

    owner =
      spawn(fn ->
        {:ok, port} = :corral.open(@tree, ["2", "2"], stdin: :null, stderr: :null)
        send(parent, {:tree, self(), read_pids(port, "")})

        receive do
          :stop ->
            t0 = now_ns()
            terminal = :corral.stop(port)
            send(parent, {:stopped, self(), (now_ns() - t0) / 1.0e6, terminal})
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
        t0 = now_ns()
        Process.exit(owner, :kill)

        case wait_dead(pids, "tree", t0, poll_us, 10_000) do
          {:ok, us} ->
            %{ms: us / 1000, survivors: 0, terminal: nil}

          {:timeout, left} ->
            kill_pids(left)
            %{ms: 10_000.0, survivors: length(left), terminal: nil}
        end

      :stop ->
        send(owner, :stop)

        receive do
          {:stopped, ^owner, ms, terminal} ->
            left = Enum.filter(pids, &alive?(&1, "tree"))
            kill_pids(left)
            %{ms: ms, survivors: length(left), terminal: terminal}
        after
          10_000 -> raise ":corral.stop/1 did not return within 10 s"
        end
    end
  end

  defp read_pids(port, buf) do
    case Regex.scan(~r/^pid (\d+)$/m, buf, capture: :all_but_first) do
      found when length(found) >= 7 ->
        for [p] <- found, do: String.to_integer(p)

      found ->
        receive do
          {^port, {:data, _, bin}} ->
            :corral.ack(port, byte_size(bin))
            read_pids(port, buf <> bin)

          {^port, other} ->
            raise "tree ended early: #{inspect(other)}"
        after
          10_000 -> raise "tree printed #{length(found)} pids in 10 s"
        end
    end
  end
end
