# The soak test (test/corral_soak_test.exs) with many more runs than
# `make test` gives it: it fails on any fd, zombie or cgroup left behind.
defmodule Bench.Soak do
  @moduledoc false

  def runs, do: Bench.n(10_000, 200)

  def run do
    {out, status} =
      System.cmd("mix", ~w(test --only soak test/corral_soak_test.exs),
        env: [{"MIX_ENV", "test"}, {"CORRAL_SOAK_RUNS", "#{runs()}"}],
        stderr_to_stdout: true
      )

    IO.puts(out)

    [_, kib] =
      Regex.run(~r/spawner RSS growth (-?\d+) KiB/, out) || raise "soak failed (#{status})"

    %{corral: String.to_integer(kib), baselines: [], ok: status == 0}
  end
end
