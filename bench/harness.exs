# The harness: runs the scenario table (bench/run.exs), each scenario
# printing its own detail table as it goes, then writes one row per
# scenario as a Markdown table and a gnuplot chart.
#
# A scenario is a map:
#   name       what `make bench ONLY=name` selects (a prefix selects several)
#   what       what is measured, and how
#   unit       :us, :ms, :mbps, :per_s, :bytes, :fds, :count or :kib (lower
#              is better, but for the rates :mbps and :per_s)
#   baselines  labels of the baselines, in the order run/0 returns them; the
#              first is the one the ratio is taken against
#   target     none, {:ratio, op, x} or {:value, op, x} (op :<=, :>=, :<, :==),
#              or {:text, description} when run/0 decides through :ok
#   run        fn returning %{corral: x, baselines: [x | nil]} and optionally
#              ok: false (a condition besides the target failed)
defmodule Bench.Harness do
  @moduledoc false
  import Bench

  @results Path.expand("results", __DIR__)

  def main(scenarios) do
    started = now_ns()
    only = System.get_env("CORRAL_BENCH_ONLY", "")
    info = machine()
    IO.puts("Corral benchmarks\n" <> Enum.map_join(info, "\n", &("  " <> &1)))
    rows = run(scenarios, only)
    secs = (now_ns() - started) / 1.0e9
    info = info ++ ["load average at end: #{loadavg()}; total time #{fmt(secs, 0)} s"]
    IO.puts("\n== Summary ==")

    table(
      "scenario|Corral|ratio|target|result",
      for(r <- rows, do: [r.name, r.corral, r.ratio_text, r.target, r.result])
    )

    # A partial or quick run must not overwrite the figures the README shows.
    dir = if only == "" and not quick?(), do: @results, else: Path.join(out_dir(), "results")
    write(dir, info, rows)
    IO.puts("\nWrote #{Path.relative_to_cwd(dir)}/results.md and results.svg")
    if Enum.any?(rows, &(&1.result == "FAILED")), do: System.halt(1)
  end

  @doc "Runs the scenarios `only` selects (all for \"\"), returning one summary row each."
  def run(scenarios, only) do
    for s <- select(scenarios, only), s = Map.put_new(s, :target, nil) do
      IO.puts("\n== #{s.name}: #{s.what} ==")
      row(s, guarded(s.run))
    end
  end

  @doc "Writes `dir`/results.md and `dir`/results.svg."
  def write(dir, info, rows) do
    File.mkdir_p!(dir)
    File.write!(Path.join(dir, "results.md"), markdown(info, rows))
    chart(dir, rows)
  end

  defp select(scenarios, ""), do: scenarios

  defp select(scenarios, only) do
    wanted = String.split(only, ",", trim: true)

    picked =
      Enum.filter(scenarios, fn s -> Enum.any?(wanted, &String.starts_with?(s.name, &1)) end)

    names = Enum.map_join(scenarios, ", ", & &1.name)
    if picked == [], do: raise("ONLY=#{only} names no scenario; the scenarios: #{names}")
    picked
  end

  defp guarded(fun) do
    {:ok, fun.()}
  rescue
    e -> failed(Exception.message(e))
  catch
    kind, reason -> failed(Exception.format_banner(kind, reason))
  end

  defp failed(msg) do
    IO.puts("FAILED: " <> msg)
    {:failed, msg |> String.split("\n") |> hd()}
  end

  ## One summary row per scenario

  defp row(s, outcome) do
    Map.merge(
      %{
        name: s.name,
        what: s.what,
        target: target_text(s),
        better: if(s.unit in [:mbps, :per_s], do: :higher, else: :lower),
        chart_target: match?({:ratio, _, _}, s.target) && elem(s.target, 2)
      },
      figures(s, outcome)
    )
  end

  defp figures(_, {:failed, msg}),
    do: %{corral: "FAILED: #{msg}", baselines: "", ratio: nil, ratio_text: "", result: "FAILED"}

  defp figures(s, {:ok, r}) do
    ref = List.first(r.baselines)
    # Only positive figures have a ratio (none for "0 survivors").
    ratio = if is_number(ref) and ref > 0 and r.corral > 0, do: r.corral / ref
    met = target_met(s.target, r.corral, ratio)

    baselines =
      Enum.zip(s.baselines, r.baselines)
      |> Enum.reject(fn {_, v} -> v == nil end)
      |> Enum.map_join("; ", fn {label, v} -> "#{label} #{show(v, s.unit)}" end)

    %{
      corral: show(r.corral, s.unit),
      baselines: if(baselines == "", do: "—", else: baselines),
      ratio: ratio,
      ratio_text: if(ratio, do: fmt(ratio, 2) <> "×", else: "—"),
      result:
        cond do
          s.target == nil and not Map.has_key?(r, :ok) -> "—"
          met != false and Map.get(r, :ok, true) -> "pass"
          true -> "miss"
        end
    }
  end

  defp target_met({:ratio, _, _}, _, nil), do: false
  defp target_met({:ratio, op, x}, _, ratio), do: apply(Kernel, op, [ratio, x])
  defp target_met({:value, op, x}, v, _), do: apply(Kernel, op, [v, x])
  defp target_met(_, _, _), do: nil

  defp target_text(%{target: nil}), do: "—"
  defp target_text(%{target: {:text, t}}), do: t
  defp target_text(%{target: {:ratio, op, x}}), do: "#{op_text(op)} #{fmt(x, 2)}×"
  defp target_text(%{target: {:value, op, x}, unit: u}), do: "#{op_text(op)} #{show(x, u)}"

  defp op_text(op), do: %{<=: "≤", >=: "≥", <: "<", ==: "="}[op]

  defp show(v, :us), do: fmt(v, 0) <> " µs"
  defp show(v, :ms) when is_integer(v), do: "#{v} ms"
  defp show(v, :ms), do: fmt(v, 2) <> " ms"
  defp show(v, :mbps), do: fmt(v, 0) <> " MB/s"
  defp show(v, :per_s), do: fmt(v, 0) <> "/s"
  defp show(v, :bytes), do: size(v)
  defp show(v, :fds), do: fmt(v, 2)
  defp show(v, :count), do: fmt(v, 0)
  defp show(v, :kib), do: fmt(v, 0) <> " KiB"

  ## Output

  defp markdown(info, rows) do
    cell = &String.replace(to_string(&1), "|", "\\|")

    lines =
      for r <- rows do
        "| `#{r.name}` | " <>
          Enum.map_join(
            [r.what, r.corral, r.baselines, r.ratio_text, r.target, r.result],
            " | ",
            cell
          ) <>
          " |"
      end

    """
    # Corral benchmarks

    #{Enum.map_join(info, "\n", &("- " <> &1))}

    Ratio = Corral ÷ the first baseline listed (MB = 10^6 bytes).

    | scenario | measures | Corral | baselines | ratio | target | result |
    |---|---|---:|---|---:|---|---|
    #{Enum.join(lines, "\n")}

    ![Corral ÷ baseline per scenario](results.svg)
    """
  end

  # Bars of the ratio per scenario on a log scale, the target ratios marked
  # (bench/chart.gp draws them).
  defp chart(dir, rows) do
    svg = Path.join(dir, "results.svg")
    File.rm(svg)

    case Enum.filter(rows, & &1.ratio) do
      [] -> IO.puts("No scenario with a ratio: no chart.")
      rows -> plot(rows, svg)
    end
  end

  defp plot(rows, svg) do
    data = Path.join(System.tmp_dir!(), "corral_chart_#{System.unique_integer([:positive])}.tsv")

    File.write!(
      data,
      for r <- rows do
        arrow = if r.better == :lower, do: "↓", else: "↑"
        "#{r.name} #{arrow}\t#{r.ratio}\t#{r.chart_target || "NaN"}\t#{r.result}\n"
      end
    )

    xs = Enum.flat_map(rows, &[&1.ratio, &1.chart_target || 1.0])

    vars =
      "data='#{data}'; out='#{svg}'; n=#{length(rows)}; " <>
        "xmin=#{Enum.min([1.0 | xs]) / 3}; xmax=#{Enum.max([1.0 | xs]) * 3}"

    gp = Path.expand("chart.gp", __DIR__)

    case System.cmd("gnuplot", ["-e", vars, gp], stderr_to_stdout: true) do
      {_, 0} -> :ok
      {out, n} -> IO.puts("gnuplot failed (#{n}), no chart: #{out}")
    end

    File.rm(data)
  end

  ## The machine

  defp machine do
    {uname, 0} = System.cmd("uname", ["-srm"])

    [_, cpu] =
      Regex.run(~r/^model name\s*:\s*(.+)$/m, File.read!("/proc/cpuinfo")) || [nil, "unknown CPU"]

    otp = :erlang.system_info(:otp_release) |> to_string()

    otp =
      case File.read(Path.join([:code.root_dir(), "releases", otp, "OTP_VERSION"])) do
        {:ok, v} -> String.trim(v)
        _ -> otp
      end

    [
      "#{DateTime.utc_now() |> DateTime.truncate(:second)}" <>
        if(quick?(), do: " (QUICK: short counts, not figures)", else: ""),
      "#{:erlang.system_info(:logical_processors_available)} CPUs, #{cpu}, kernel #{String.trim(uname)}",
      "OTP #{otp} (ERTS #{:erlang.system_info(:version)}), Elixir #{System.version()}, " <>
        "#{System.schedulers_online()} schedulers, MIX_ENV=#{Mix.env()}, ulimit -n #{nofile_limit("self")}",
      "load average at start: #{loadavg()}"
    ]
  end

  defp loadavg do
    case File.read("/proc/loadavg") do
      {:ok, l} -> l |> String.split() |> Enum.take(3) |> Enum.join(" ")
      _ -> "unknown"
    end
  end
end
