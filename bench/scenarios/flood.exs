# `yes` with an owner that never reads: how much the VM grows. Corral's
# credit window bounds it; open_port's mailbox is unbounded.
defmodule Bench.Flood do
  @moduledoc false
  import Bench
  @mib 1024 * 1024

  # The open_port flood stops past this growth, to spare the machine.
  @cap 4 * 1024 * @mib

  @doc "What Corral may grow by: its credit window and 1 MiB."
  def limit, do: default_window() + @mib

  def run do
    ms = n(5000, 1000)
    yes = System.find_executable("yes") || raise "yes not found"
    corral = flood(:corral, yes, ms)
    port = flood(:open_port, yes, ms)
    IO.puts("`yes` for #{ms} ms, the owner never reads; growth of :erlang.memory(:total).")

    table(
      "variant|secs|growth|peak|owner mem|owner queue|read from pipe|yes dead",
      for {name, r} <- [{"Corral (never acks)", corral}, {"open_port (never reads)", port}] do
        [
          name,
          fmt(r.seconds, 1),
          size(r.growth),
          size(r.peak),
          size(r.owner_memory),
          r.queue_len,
          size(r.produced),
          if(r.pid_gone, do: "yes", else: "NO")
        ]
      end
    )

    curve = fn r ->
      r.samples
      |> Enum.chunk_by(&div(elem(&1, 0), 1000))
      |> Enum.map_join(" → ", &size(elem(List.last(&1), 1)))
    end

    IO.puts(
      "Growth at each second: Corral #{curve.(corral)}\n                       open_port #{curve.(port)}"
    )

    if port.capped, do: IO.puts("(open_port stopped early at #{size(@cap)} growth)")
    unless corral.pid_gone and port.pid_gone, do: raise("a `yes` survived its port")
    %{corral: corral.peak, baselines: [port.peak]}
  end

  defp flood(kind, yes, ms) do
    parent = self()
    :erlang.garbage_collect()
    Process.sleep(200)
    mem0 = :erlang.memory(:total)

    owner =
      spawn(fn ->
        port =
          if kind == :corral,
            do: elem(:corral.open(yes, [], []), 1),
            else: Port.open({:spawn_executable, yes}, [:binary])

        send(parent, {:flood_port, self(), port})

        # Corral's mailbox stays small, so this selective receive stays
        # cheap; the open_port owner never looks at its mailbox.
        if kind == :corral do
          receive do
            :stop -> send(parent, {:flood_stopped, self(), :corral.stop(port)})
          end
        else
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
      if kind == :corral,
        do: elem(:corral.os_pid(port), 1),
        else: elem(Port.info(port, :os_pid), 1)

    t0 = System.monotonic_time(:millisecond)
    {samples, capped} = sample_memory(mem0, t0, ms, [])
    seconds = (System.monotonic_time(:millisecond) - t0) / 1000
    growth = :erlang.memory(:total) - mem0
    info = Process.info(owner, [:memory, :message_queue_len]) || [memory: 0, message_queue_len: 0]

    produced =
      case if(kind == :corral, do: :corral.stats(port), else: Port.info(port, :input)) do
        {:ok, %{bytes_out: b}} -> b
        {:input, b} -> b
        _ -> 0
      end

    # Corral: :corral.stop/1 by the owner (it drains the mailbox); open_port:
    # SIGKILL first, so that `yes` does not print "Broken pipe", then the
    # owner, whose death closes the port.
    if kind == :corral do
      send(owner, :stop)

      receive do
        {:flood_stopped, ^owner, _} -> :ok
      after
        10_000 -> raise "corral.stop did not return within 10 s"
      end
    else
      kill_pids([os_pid])
      Process.exit(owner, :kill)
    end

    receive do
      {:DOWN, ^mref, _, _, _} -> :ok
    after
      10_000 -> raise "#{kind} owner still alive 10 s after stop"
    end

    gone = match?({:ok, _}, wait_dead([os_pid], "yes", now_ns(), 100_000, 5000))

    %{
      seconds: seconds,
      growth: growth,
      samples: Enum.reverse(samples),
      capped: capped,
      peak: Enum.max([growth | Enum.map(samples, &elem(&1, 1))]),
      owner_memory: info[:memory],
      queue_len: info[:message_queue_len],
      produced: produced,
      pid_gone: gone
    }
  end

  defp sample_memory(mem0, t0, ms, acc) do
    Process.sleep(100)
    elapsed = System.monotonic_time(:millisecond) - t0
    growth = :erlang.memory(:total) - mem0
    acc = [{elapsed, growth} | acc]

    cond do
      growth > @cap -> {acc, true}
      elapsed >= ms -> {acc, false}
      true -> sample_memory(mem0, t0, ms, acc)
    end
  end
end
