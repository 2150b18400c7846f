# The chaos test (test/corral_chaos_test.exs) run longer than `make test`
# runs it: random commands with owners killed at random, then nothing may
# be left behind. Counts, not timings: how many runs it made.
defmodule Bench.Chaos do
  @moduledoc false

  def seconds, do: Bench.n(60, 10)

  def run do
    {out, status} =
      System.cmd("mix", ~w(test --only chaos test/corral_chaos_test.exs),
        env: [{"MIX_ENV", "test"}, {"CORRAL_CHAOS_SECONDS", "#{seconds()}"}],
        stderr_to_stdout: true
      )

    IO.puts(out)

    [_, runs] = Regex.run(~r/chaos: (\d+) runs/, out) || raise "chaos failed (#{status})"
    %{corral: String.to_integer(runs), baselines: [], ok: status == 0}
  end
end
