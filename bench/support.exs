# What the benchmark scripts share: running the selected benchmarks so that
# one failure does not hide the others, and formatting tables and ratios.
defmodule Corral.BenchSupport do
  @moduledoc false

  @doc """
  Runs the benchmarks `[{"N. Title", fun}]` whose number is listed in the
  environment variable `var` (comma-separated; all by default) and returns
  `[{title, result}]`. A benchmark that raises prints `FAILED: reason`.
  """
  def run_selected(benches, var) do
    only =
      case System.get_env(var) do
        nil -> Enum.map(benches, fn {name, _} -> String.first(name) end)
        list -> String.split(list, ",", trim: true)
      end

    for {name, fun} <- benches, String.first(name) in only do
      IO.puts("\n== #{name} ==")
      {name, guarded(fun)}
    end
  end

  @doc "Prints each result: `{pass?, line}`, or `{:failed, reason}`."
  def verdict(results) do
    IO.puts("\n== Verdict ==")

    for {name, result} <- results do
      case result do
        {true, line} -> IO.puts("  PASS  " <> line)
        {false, line} -> IO.puts("  MISS  " <> line)
        {:failed, msg} -> IO.puts("  FAILED  #{name}: #{msg}")
      end
    end
  end

  def guarded(fun) do
    fun.()
  rescue
    e ->
      msg = Exception.message(e)
      IO.puts("FAILED: " <> msg)
      {:failed, msg}
  catch
    kind, reason ->
      msg = Exception.format_banner(kind, reason)
      IO.puts("FAILED: " <> msg)
      {:failed, msg}
  end

  @doc "Prints a table: the first column left-aligned, the others right-aligned."
  def table(headers, rows) do
    widths =
      Enum.reduce([headers | rows], List.duplicate(0, length(headers)), fn row, ws ->
        Enum.zip_with(row, ws, fn cell, w -> max(String.length(cell), w) end)
      end)

    line = fn row ->
      row
      |> Enum.zip(widths)
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

  def env_int(name, default) do
    case System.get_env(name) do
      nil -> default
      v -> String.to_integer(v)
    end
  end

  @doc "The OTP version in full (e.g. 25.2.3), from the release's OTP_VERSION."
  def otp_version do
    otp = :erlang.system_info(:otp_release) |> to_string()

    case File.read(Path.join([:code.root_dir(), "releases", otp, "OTP_VERSION"])) do
      {:ok, v} -> String.trim(v)
      _ -> otp
    end
  end

  @doc "The 1, 5 and 15 minute load averages, or \"unknown\"."
  def loadavg do
    case File.read("/proc/loadavg") do
      {:ok, l} -> l |> String.split() |> Enum.take(3) |> Enum.join(" ")
      _ -> "unknown"
    end
  end
end
