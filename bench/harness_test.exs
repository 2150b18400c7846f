# The harness's own checks, with made-up scenarios (no timing):
#   make bench-check        (mix run bench/harness_test.exs)
Code.require_file("measure.exs", __DIR__)
Code.require_file("harness.exs", __DIR__)
ExUnit.start(autorun: false)

defmodule Bench.HarnessTest do
  use ExUnit.Case, async: false
  import ExUnit.CaptureIO

  setup do
    dir = Path.join(System.tmp_dir!(), "corral_harness_#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    %{dir: dir}
  end

  defp scenario(name, target, result, unit \\ :us) do
    %{
      name: name,
      what: "what #{name} measures",
      unit: unit,
      target: target,
      baselines: ["base", "other"],
      run: fn -> if is_function(result), do: result.(), else: result end
    }
  end

  defp rows(scenarios, only \\ "") do
    {rows, _} = with_io(fn -> Bench.Harness.run(scenarios, only) end)
    Map.new(rows, &{&1.name, &1})
  end

  test "the result follows the target: ratio, value, text through :ok, none" do
    r =
      rows([
        scenario("fast", {:ratio, :<=, 1.0}, %{corral: 80, baselines: [100, 50]}),
        scenario("slow", {:ratio, :<=, 1.0}, %{corral: 120, baselines: [100, 50]}),
        scenario("rate", {:ratio, :>=, 0.9}, %{corral: 95, baselines: [100]}, :mbps),
        scenario("under", {:value, :<, 20}, %{corral: 19.5, baselines: []}, :ms),
        scenario("over", {:value, :<, 20}, %{corral: 20, baselines: []}, :ms),
        scenario("leak", {:text, "nothing left"}, %{corral: 1, baselines: [], ok: false}, :kib),
        scenario("errors", {:ratio, :>=, 1.0}, %{corral: 2, baselines: [1], ok: false}),
        scenario("plain", nil, %{corral: 3, baselines: [4]})
      ])

    assert %{result: "pass", ratio_text: "0.80×", target: "≤ 1.00×"} = r["fast"]
    assert r["fast"].baselines == "base 100 µs; other 50 µs"
    assert %{result: "miss", ratio_text: "1.20×"} = r["slow"]
    assert %{result: "pass", better: :higher, corral: "95 MB/s"} = r["rate"]
    assert %{result: "pass", ratio: nil, baselines: "—", target: "< 20 ms"} = r["under"]
    assert r["over"].result == "miss"
    assert %{result: "miss", target: "nothing left"} = r["leak"]
    assert r["errors"].result == "miss"
    assert %{result: "—", ratio_text: "0.75×", better: :lower} = r["plain"]
  end

  test "a zero figure has no ratio, and a missing baseline is left out" do
    r = rows([scenario("zero", {:value, :==, 0}, %{corral: 0, baselines: [1000, nil]}, :count)])
    assert %{ratio: nil, ratio_text: "—", result: "pass", baselines: "base 1000"} = r["zero"]
  end

  test "a scenario that raises is FAILED with its message, and the next one still runs" do
    r =
      rows([
        scenario("boom", {:ratio, :<=, 1.0}, fn -> raise "no spawner" end),
        scenario("after", nil, %{corral: 1, baselines: [1]})
      ])

    assert %{result: "FAILED", corral: "FAILED: no spawner", ratio: nil} = r["boom"]
    assert r["after"].ratio_text == "1.00×"
  end

  test "ONLY selects by name prefix, and names the scenarios when it matches none" do
    all =
      for n <- ~w(spawn_latency spawn_throughput cat),
          do: scenario(n, nil, %{corral: 1, baselines: []})

    assert Map.keys(rows(all, "spawn")) == ~w(spawn_latency spawn_throughput)
    assert Map.keys(rows(all, "cat,spawn_latency")) == ~w(cat spawn_latency)
    e = assert_raise RuntimeError, fn -> rows(all, "nope") end
    assert e.message =~ "ONLY=nope names no scenario"
    assert e.message =~ "spawn_latency, spawn_throughput, cat"
  end

  test "write/3 makes the Markdown table and the SVG chart", %{dir: dir} do
    r =
      rows([
        scenario("fast", {:ratio, :<=, 1.0}, %{corral: 80, baselines: [100]}),
        scenario("tiny", nil, %{corral: 1, baselines: [2000]}, :bytes),
        scenario("under", {:value, :<, 20}, %{corral: 5, baselines: []}, :ms)
      ])

    Bench.Harness.write(dir, ["machine line"], [r["fast"], r["tiny"], r["under"]])
    md = File.read!(Path.join(dir, "results.md"))
    assert md =~ "- machine line"
    assert md =~ "| scenario | measures | Corral | baselines | ratio | target | result |"
    assert md =~ "| `fast` | what fast measures | 80 µs | base 100 µs | 0.80× | ≤ 1.00× | pass |"
    assert md =~ "| `under` | what under measures | 5 ms | — | — | < 20 ms | pass |"
    svg = File.read!(Path.join(dir, "results.svg"))
    assert svg =~ "<svg"
    # The rows with a ratio, with which way is better; not the one without.
    assert svg =~ "fast ↓" and svg =~ "tiny ↓"
    refute svg =~ "under"
  end

  test "no row with a ratio: no chart, and no stale one left", %{dir: dir} do
    File.write!(Path.join(dir, "results.svg"), "stale")
    r = rows([scenario("under", {:value, :<, 20}, %{corral: 5, baselines: []}, :ms)])
    capture_io(fn -> Bench.Harness.write(dir, [], [r["under"]]) end)
    refute File.exists?(Path.join(dir, "results.svg"))
  end

  test "once/2 runs its function once, and keeps a failure too" do
    key = make_ref()
    assert Bench.once(key, fn -> send(self(), :ran) && 42 end) == 42
    assert Bench.once(key, fn -> send(self(), :ran) && 43 end) == 42
    assert_received :ran
    refute_received :ran
    bad = make_ref()
    assert_raise RuntimeError, fn -> Bench.once(bad, fn -> raise "once" end) end
    assert_raise RuntimeError, fn -> Bench.once(bad, fn -> :not_run end) end
  end

  test "count/1 and size/1 format figures" do
    assert Enum.map([7, 1000, 10_000, 1_234_567], &Bench.count/1) == ~w(7 1,000 10,000 1,234,567)
    assert Bench.size(948) == "948 B"
    assert Bench.size(2 * 1024 * 1024) == "2.0 MiB"
  end
end

ExUnit.run() |> then(fn %{failures: f} -> if f > 0, do: System.halt(1) end)
