# Corral's benchmarks: one row per scenario, Corral's figure beside its
# baselines from the same run. bench/harness.exs describes the fields.
#
#   make bench                         every scenario; writes bench/results/
#   make bench ONLY=spawn_latency,cat  the scenarios whose names start so
#   make bench QUICK=1                 short counts, to check that it works
#
# A partial or quick run writes bench/out/results/ instead. The C and C++
# baselines (bench/c/) are built into bench/out/, as is the data file.

Code.require_file("measure.exs", __DIR__)
Code.require_file("harness.exs", __DIR__)
for f <- Path.wildcard(Path.join(__DIR__, "scenarios/*.exs")), do: Code.require_file(f)

n = &Bench.n/2
count = &Bench.count/1
small = count.(Bench.Sleeps.small())
big = count.(Bench.Sleeps.big())
# Each of these scenarios reads one field of the same measurement.
sleeps = fn f -> fn -> f.(Bench.Sleeps.run()) end end

Bench.Harness.main([
  %{
    name: "spawn_latency",
    what: ~s{median latency of cmd("/bin/true"), #{n.(300, 30)} runs},
    unit: :us,
    target: {:ratio, :<=, 1.0},
    baselines: ["open_port", "System.cmd", "C posix_spawn+waitpid", "C++ Boost.Process"],
    run: &Bench.Spawn.latency/0
  },
  %{
    name: "spawn_throughput",
    what: ~s{cmd("/bin/true") from 16 parallel callers, 0 errors},
    unit: :per_s,
    target: {:ratio, :>=, 1.0},
    baselines: ["open_port"],
    run: &Bench.Spawn.throughput/0
  },
  %{
    name: "sleeps_1k_spawn_latency",
    what: "the same median with #{small} `sleep`s running",
    unit: :us,
    baselines: ["open_port, #{small} port sleeps running"],
    run: sleeps.(&%{corral: &1.small.busy_us, baselines: [&1.port.busy_us]})
  },
  %{
    name: "sleeps_10k_spawn_latency",
    what: "the same median with #{big} `sleep`s running",
    unit: :us,
    baselines: ["Corral, none running"],
    run: sleeps.(&%{corral: &1.big.busy_us, baselines: [&1.idle]})
  },
  %{
    name: "sleeps_10k_memory",
    what: "VM memory per child, #{big} concurrent `sleep 60`",
    unit: :bytes,
    baselines: ["open_port (#{small})"],
    run: sleeps.(&%{corral: &1.big.mem_pc, baselines: [&1.port.mem_pc]})
  },
  %{
    name: "sleeps_10k_fds",
    what: "VM fds per child, #{big} concurrent `sleep 60`",
    unit: :fds,
    baselines: ["open_port (#{small})"],
    run: sleeps.(&%{corral: &1.big.vm_fd_pc, baselines: [&1.port.vm_fd_pc]})
  },
  %{
    name: "sleeps_10k_survivors",
    what: "children alive once their owners are killed (open_port: closed); all #{big} opened",
    unit: :count,
    target: {:value, :==, 0},
    baselines: ["open_port"],
    run: sleeps.(&%{corral: &1.survivors, baselines: [&1.port.survivors], ok: &1.all_opened})
  },
  %{
    name: "sleeps_10k_gone",
    what: "from killing the owners until every `sleep` is gone",
    unit: :ms,
    baselines: [],
    run: sleeps.(&%{corral: &1.big.close_ms || raise("sleeps alive after 30 s"), baselines: []})
  },
  %{
    name: "kill_latency",
    what: "owner killed → 7-process tree gone, median; 0 survivors",
    unit: :ms,
    target: {:value, :<, 20},
    baselines: [],
    run: &Bench.Kill.kill_latency/0
  },
  %{
    name: "stop_latency",
    what: ":corral.stop/1 of a 7-process tree, median; 0 survivors",
    unit: :ms,
    target: {:value, :<, 20},
    baselines: [],
    run: &Bench.Kill.stop_latency/0
  },
  %{
    name: "cat",
    what: "`cat` of a #{Bench.size(Bench.IO.bytes())} file, default window, best run",
    unit: :mbps,
    target: {:ratio, :>=, 0.9},
    baselines: ["raw C (best of 3 ways)", "open_port"],
    run: &Bench.IO.cat_file/0
  },
  %{
    name: "stream",
    what: "Corral.stream!/3 of the same file, best of #{n.(3, 1)}",
    unit: :mbps,
    baselines: ["C, same pipe size", "open_port"],
    run: &Bench.IO.stream/0
  },
  %{
    name: "write",
    what: "Corral.Process.write/2 of as much into `cat > /dev/null`, best of #{n.(3, 1)}",
    unit: :mbps,
    baselines: ["C writer"],
    run: &Bench.IO.write/0
  },
  %{
    name: "round_trip",
    what: "4 KiB request/response through `cat`, median",
    unit: :us,
    baselines: ["open_port"],
    run: &Bench.IO.round_trip/0
  },
  %{
    name: "flood",
    what: "VM memory growth, `yes` for #{n.(5, 1)} s, owner never reads",
    unit: :bytes,
    target: {:value, :<=, Bench.Flood.limit()},
    baselines: ["open_port"],
    run: &Bench.Flood.run/0
  },
  %{
    name: "daemon_lines",
    what:
      "`yes` under Corral.Daemon, each line logged to a null :logger handler, #{n.(10, 1)} s: lines/s",
    unit: :per_s,
    baselines: [
      "System.cmd counting lines",
      "Corral.Daemon, stdio_window 10 KB (MuonTrap's default)",
      "Corral.Daemon, no-op logger_fun"
    ],
    run: &Bench.Daemon.lines/0
  },
  %{
    name: "daemon_memory",
    what: "VM memory growth during that run, peak",
    unit: :bytes,
    target: {:value, :<, 64 * 1024 * 1024},
    baselines: ["System.cmd"],
    run: &Bench.Daemon.memory/0
  },
  %{
    name: "soak",
    what: "#{count.(Bench.Soak.runs())} mixed runs (mix test --only soak): spawner RSS growth",
    unit: :kib,
    target: {:text, "nothing left behind"},
    baselines: [],
    run: &Bench.Soak.run/0
  },
  %{
    name: "chaos",
    what:
      "random runs for #{Bench.Chaos.seconds()} s, a third of the owners killed " <>
        "(mix test --only chaos): runs made",
    unit: :count,
    target: {:text, "nothing left behind"},
    baselines: [],
    run: &Bench.Chaos.run/0
  }
])
