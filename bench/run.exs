# Corral's benchmarks: one row per scenario, Corral's figure beside its
# baselines from the same run. bench/harness.exs describes the fields.
#
#   make bench                         every scenario; writes bench/results/
#   make bench ONLY=spawn_latency,cat  the scenarios whose names start so
#   make bench QUICK=1                 short counts, to check that it works
#
# A partial or quick run writes bench/out/results/ instead. The C and C++
# baselines (bench/c/) are built into bench/out/, as is the 1 GiB data file.

for f <- ~w(measure.exs harness.exs scenarios/spawn.exs scenarios/sleeps.exs scenarios/io.exs),
    do: Code.require_file(f, __DIR__)

sleeps = &Bench.Sleeps.run/0
k = fn n -> if Bench.quick?(), do: "#{n}", else: "#{div(n, 1000)},000" end

Bench.Harness.main([
  %{
    name: "spawn_latency",
    what: ~s{median latency of cmd("/bin/true"), #{Bench.n(300, 30)} runs},
    unit: :us,
    better: :lower,
    target: {:ratio, :<=, 1.0},
    baselines: ["open_port", "System.cmd", "C posix_spawn+waitpid", "C++ Boost.Process"],
    run: &Bench.Spawn.latency/0
  },
  %{
    name: "spawn_throughput",
    what: ~s{spawns/s of cmd("/bin/true"), 16 parallel callers, 0 errors},
    unit: :per_s,
    better: :higher,
    target: {:ratio, :>=, 1.0},
    baselines: ["open_port"],
    run: &Bench.Spawn.throughput/0
  },
  %{
    name: "sleeps_1k_spawn_latency",
    what: "the same median with #{k.(Bench.n(1000, 100))} `sleep`s running",
    unit: :us,
    better: :lower,
    target: nil,
    baselines: ["open_port, as many port sleeps"],
    run: fn ->
      s = sleeps.()
      %{corral: s.small.busy_us, baselines: [s.port.busy_us]}
    end
  },
  %{
    name: "sleeps_10k_spawn_latency",
    what: "the same median with #{k.(Bench.n(10_000, 300))} `sleep`s running",
    unit: :us,
    better: :lower,
    target: nil,
    baselines: ["Corral, none running"],
    run: fn ->
      s = sleeps.()
      %{corral: s.big.busy_us, baselines: [s.idle]}
    end
  },
  %{
    name: "sleeps_10k_memory",
    what: "VM memory per child, #{k.(Bench.n(10_000, 300))} concurrent `sleep 60`",
    unit: :bytes,
    better: :lower,
    target: nil,
    baselines: ["open_port (#{k.(Bench.n(1000, 100))})"],
    run: fn ->
      s = sleeps.()
      %{corral: s.big.mem_pc, baselines: [s.port.mem_pc]}
    end
  },
  %{
    name: "sleeps_10k_fds",
    what: "VM fds per child, the same",
    unit: :fds,
    better: :lower,
    target: nil,
    baselines: ["open_port (#{k.(Bench.n(1000, 100))})"],
    run: fn ->
      s = sleeps.()
      %{corral: s.big.vm_fd_pc, baselines: [s.port.vm_fd_pc]}
    end
  },
  %{
    name: "sleeps_10k_survivors",
    what: "children alive after their owners were killed (open_port: after Port.close)",
    unit: :count,
    better: :lower,
    target: {:value, :==, 0},
    baselines: ["open_port"],
    run: fn ->
      s = sleeps.()

      %{
        corral: s.big.survivors + s.small.survivors,
        baselines: [s.port.survivors],
        ok: s.big.n >= s.target
      }
    end
  },
  %{
    name: "sleeps_10k_gone",
    what: "ms from killing the owners until every `sleep` is gone",
    unit: :ms,
    better: :lower,
    target: nil,
    baselines: [],
    run: fn ->
      s = sleeps.()
      %{corral: s.big.close_ms || raise("sleeps still alive after 30 s"), baselines: []}
    end
  },
  %{
    name: "kill_latency",
    what: "owner killed → 7-process tree gone, median; 0 survivors",
    unit: :ms,
    better: :lower,
    target: {:value, :<, 20},
    baselines: [],
    run: &Bench.Sleeps.kill_latency/0
  },
  %{
    name: "stop_latency",
    what: ":corral.stop/1 on a 7-process tree, median; 0 survivors",
    unit: :ms,
    better: :lower,
    target: {:value, :<, 20},
    baselines: [],
    run: &Bench.Sleeps.stop_latency/0
  },
  %{
    name: "cat",
    what:
      "`cat` of a #{Bench.size(Bench.n(1024 ** 3, 64 * 1024 ** 2))} file, default window, best run",
    unit: :mbps,
    better: :higher,
    target: {:ratio, :>=, 0.9},
    baselines: ["C, same pipe size", "open_port"],
    run: &Bench.IO.cat_file/0
  },
  %{
    name: "stream",
    what: "Corral.stream!/3 of the same file, best of 3",
    unit: :mbps,
    better: :higher,
    target: nil,
    baselines: ["C, same pipe size", "open_port"],
    run: &Bench.IO.stream/0
  },
  %{
    name: "write",
    what: "Corral.Process.write/2 of as much into `cat > /dev/null`, best of 3",
    unit: :mbps,
    better: :higher,
    target: nil,
    baselines: ["C writer"],
    run: &Bench.IO.write/0
  },
  %{
    name: "round_trip",
    what: "4 KiB request/response through `cat`, median",
    unit: :us,
    better: :lower,
    target: nil,
    baselines: ["open_port"],
    run: &Bench.IO.round_trip/0
  },
  %{
    name: "flood",
    what: "VM memory growth, `yes` for #{Bench.n(5, 1)} s, owner never reads",
    unit: :bytes,
    better: :lower,
    target: {:value, :<=, Bench.IO.flood_limit()},
    baselines: ["open_port"],
    run: &Bench.IO.flood/0
  },
  %{
    name: "soak",
    what: "#{k.(Bench.n(10_000, 200))} mixed runs (mix test --only soak): spawner RSS growth",
    unit: :kib,
    better: :lower,
    target: {:text, "nothing left behind"},
    baselines: [],
    run: fn ->
      runs = "#{Bench.n(10_000, 200)}"
      env = [{"MIX_ENV", "test"}, {"CORRAL_SOAK_RUNS", runs}]

      {out, status} =
        System.cmd("mix", ~w(test --only soak test/corral_soak_test.exs),
          env: env,
          stderr_to_stdout: true
        )

      IO.puts(out)

      [_, kib] =
        Regex.run(~r/spawner RSS growth (-?\d+) KiB/, out) || raise("soak failed (#{status})")

      %{corral: String.to_integer(kib), baselines: [], ok: status == 0}
    end
  }
])
