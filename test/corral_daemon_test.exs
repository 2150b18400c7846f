defmodule Corral.DaemonTest do
  use ExUnit.Case, async: false
  import Corral.Test.OS
  import Corral.Test.Daemon
  import ExUnit.CaptureLog
  alias Corral.Daemon

  defp start_sup(children) do
    start_supervised!(%{
      id: :sup,
      start: {Supervisor, :start_link, [children, [strategy: :one_for_one, max_restarts: 10]]},
      type: :supervisor
    })
  end

  describe "child specs" do
    test "the MuonTrap form and the keyword form" do
      spec = Daemon.child_spec(["sleep", ["1"], [id: :s, restart: :transient, log_output: :info]])
      assert %{id: :s, restart: :transient, shutdown: 5000, type: :worker} = spec

      assert {Daemon, :start_link,
              [["sleep", ["1"], [log_output: :info, start_counter: c, shutdown: 5000]]]} =
               spec.start

      assert :counters.get(c, 1) == 0

      spec = Daemon.child_spec(command: "sleep", args: ["1"], shutdown: 300)
      assert %{id: Daemon, restart: :permanent, shutdown: 300} = spec

      assert {Daemon, :start_link, [["sleep", ["1"], [start_counter: _, shutdown: 300]]]} =
               spec.start

      assert_raise ArgumentError, ~r/missing_option, :command/, fn ->
        Daemon.child_spec(args: [])
      end
    end

    test "options are validated by corral_opts, before anything starts" do
      assert Daemon.start_link("true", [], log_output: :loud) ==
               {:error, {:bad_option, :log_output, :loud}}

      assert Daemon.start_link("true", [], log_stderr_level: "x") ==
               {:error, {:bad_option, :log_stderr_level, "x"}}

      assert Daemon.start_link("true", [], logger_fun: 3) ==
               {:error, {:bad_option, :logger_fun, 3}}

      assert Daemon.start_link("true", [], ready: {:tcp, 0}) ==
               {:error, {:bad_option, :ready, {:tcp, 0}}}

      assert Daemon.start_link("true", [], lines: true) == {:error, {:unknown_option, :lines}}

      assert Daemon.start_link("true", [], shutdown: -1) == {:error, {:bad_option, :shutdown, -1}}
      assert Daemon.start_link(["corral-no-such-program", []]) == {:error, :enoent}
    end

    test "a stream that is not logged is not read" do
      decide = fn opts ->
        {:ok, n} = :corral_opts.normalize("true", [], opts, :daemon)
        {n.log, n.request.stdout, n.request.stderr}
      end

      assert decide.([]) == {%{stdout: :none, stderr: :none}, :null, :inherit}
      assert decide.(log_output: :warn) == {%{stdout: :warning, stderr: :warning}, :pipe, :pipe}

      assert decide.(log_output: :info, log_stderr_level: :error) ==
               {%{stdout: :info, stderr: :error}, :pipe, :pipe}

      assert decide.(log_output: :info, log_stderr_level: :none) ==
               {%{stdout: :info, stderr: :none}, :pipe, :null}

      assert decide.(log_output: :info, stderr_to_stdout: true) ==
               {%{stdout: :info, stderr: :info}, :pipe, :stdout}

      assert decide.(log_output: :info, capture_stderr_only: true) ==
               {%{stdout: :none, stderr: :info}, :null, :pipe}

      assert {%{stdout: :info}, :pipe, :pipe} = decide.(logger_fun: fn _ -> :ok end)
    end
  end

  describe "exit reasons" do
    @tag capture_log: true
    test "status 0 is :normal, others go through exit_status_to_reason, signals have their own" do
      pid = trap_start("sh", ["-c", "exit 0"], [])
      assert_receive {:EXIT, ^pid, :normal}, 2000

      pid = trap_start("sh", ["-c", "exit 3"], [])
      assert_receive {:EXIT, ^pid, {:exit_status, 3}}, 2000

      pid = trap_start("sh", ["-c", "exit 4"], exit_status_to_reason: &{:failed, &1})
      assert_receive {:EXIT, ^pid, {:failed, 4}}, 2000

      pid = trap_start("sleep", ["60"], [])
      System.cmd("kill", ["-KILL", "#{Daemon.os_pid(pid)}"])
      assert_receive {:EXIT, ^pid, {:exit_signal, 9}}, 2000
    end
  end

  describe "under a supervisor" do
    test "a crashed program is restarted with a new OS pid; restarts are counted" do
      sup = start_sup([{Daemon, ["sleep", ["60"], [id: :sleeper]]}])
      pid = child_pid(sup, :sleeper)
      os_pid = Daemon.os_pid(pid)
      assert Daemon.statistics(pid).restarts == 0

      capture_log(fn ->
        System.cmd("kill", ["-KILL", "#{os_pid}"])
        assert eventually(fn -> child_pid(sup, :sleeper) not in [nil, pid] end)
      end)

      new = child_pid(sup, :sleeper)
      assert Daemon.os_pid(new) != os_pid
      assert alive?(Daemon.os_pid(new))
      refute alive?(os_pid)
      assert Daemon.statistics(new).restarts == 1
    end

    test "transient restarts on failure only; temporary never" do
      me = self()

      ok_once = [
        id: :ok,
        restart: :transient,
        wait_for: fn -> send(me, :ok_started) end
      ]

      fail = [
        id: :fail,
        restart: :transient,
        wait_for: fn -> send(me, :fail_started) end
      ]

      temp = [id: :temp, restart: :temporary, wait_for: fn -> send(me, :temp_started) end]

      capture_log(fn ->
        start_sup([
          {Daemon, ["sh", ["-c", "sleep 0.1; exit 0"], ok_once]},
          {Daemon, ["sh", ["-c", "sleep 0.1; exit 1"], fail]},
          {Daemon, ["sh", ["-c", "sleep 0.1; exit 1"], temp]}
        ])

        for msg <- [:ok_started, :fail_started, :temp_started], do: assert_receive(^msg, 2000)
        # Only the failing transient child comes back.
        assert_receive :fail_started, 2000
        assert_receive :fail_started, 2000
        refute_received :ok_started
        refute_received :temp_started
      end)
    end

    test "terminate_child returns only once the program's tree is gone, grandchild included" do
      sup =
        start_sup([
          {Daemon, ["sh", ["-c", "sleep 600 & sleep 600 & wait"], [id: :tree, shutdown: 2000]]}
        ])

      pid = child_pid(sup, :tree)
      os_pid = Daemon.os_pid(pid)
      assert eventually(fn -> length(children_of(os_pid)) == 2 end)
      tree = [os_pid | children_of(os_pid)]
      assert Enum.all?(tree, &alive?/1)

      :ok = Supervisor.terminate_child(sup, :tree)
      # No waiting: the tree is gone when terminate_child returns.
      assert Enum.filter(tree, &alive?/1) == []
    end

    test "a brutal kill of the GenServer leaves no program" do
      Process.flag(:trap_exit, true)
      {:ok, pid} = Daemon.start_link("sleep", ["600"])
      os_pid = Daemon.os_pid(pid)
      Process.exit(pid, :kill)
      assert eventually(fn -> not alive?(os_pid) end)
    end

    @tag capture_log: true
    test "a crash loop: without min_uptime it takes its siblings down, with it it does not" do
      me = self()

      children = fn opts ->
        [
          {Daemon, ["sleep", ["60"], [id: :sibling]]},
          {Daemon,
           [
             "sh",
             ["-c", "exit 1"],
             [id: :flaky, wait_for: fn -> send(me, :flaky_start) end] ++ opts
           ]}
        ]
      end

      start = fn opts ->
        {:ok, sup} =
          Supervisor.start_link(children.(opts),
            strategy: :one_for_one,
            max_restarts: 3,
            max_seconds: 1
          )

        Process.unlink(sup)
        {sup, Process.monitor(sup)}
      end

      {_sup, ref} = start.([])
      assert_receive {:DOWN, ^ref, :process, _, :shutdown}, 2000
      collect_messages(:flaky_start)

      {sup, ref} = start.(min_uptime: 400)
      sibling = child_pid(sup, :sibling)
      Process.sleep(1500)
      refute_received {:DOWN, ^ref, _, _, _}
      assert child_pid(sup, :sibling) == sibling
      # Started once, then restarted about once per 400 ms.
      starts = length(collect_messages(:flaky_start))
      assert starts in 2..5
      Supervisor.stop(sup)
    end

    @tag capture_log: true
    test "during min_uptime the GenServer still answers, and then ends with the program's reason" do
      t0 = System.monotonic_time(:millisecond)
      pid = trap_start("sh", ["-c", "exit 1"], min_uptime: 300)
      assert eventually(fn -> Daemon.write(pid, "x") == {:error, :closed} end)
      assert Daemon.signal(pid, :sighup) == {:error, :not_running}
      # The pid was reaped and may be reused: there is none to give.
      assert Daemon.os_pid(pid) == :error
      assert_receive {:EXIT, ^pid, {:exit_status, 1}}, 2000
      assert System.monotonic_time(:millisecond) - t0 >= 300
    end

    test "two daemons with distinct ids, and name registration" do
      sup =
        start_sup([
          {Daemon, ["sleep", ["60"], [id: :a, name: :corral_daemon_a]]},
          {Daemon, ["sleep", ["60"], [id: :b]]}
        ])

      assert child_pid(sup, :a) == Process.whereis(:corral_daemon_a)
      assert Daemon.os_pid(:corral_daemon_a) != Daemon.os_pid(child_pid(sup, :b))
    end
  end

  describe "logging" do
    test "lines at the stream's level, with the prefix; the last line without a newline" do
      log =
        capture_log(fn ->
          pid =
            trap_start(
              "sh",
              ["-c", "echo out1; echo err1 >&2; printf out2"],
              log_output: :info,
              log_stderr_level: :error,
              log_prefix: "[d] "
            )

          assert_receive {:EXIT, ^pid, :normal}, 2000
        end)

      assert log =~ ~r/\[info\]\s+\[d\] out1\n/
      assert log =~ ~r/\[error\]\s+\[d\] err1\n/
      assert log =~ ~r/\[info\]\s+\[d\] out2\n/
    end

    test "the default prefix is the command" do
      log =
        capture_log(fn ->
          pid = trap_start("echo", ["hi"], log_output: :info)
          assert_receive {:EXIT, ^pid, :normal}, 2000
        end)

      assert log =~ "echo: hi"
    end

    test "not logged, nothing is logged" do
      log =
        capture_log(fn ->
          pid = trap_start("echo", ["corral-silent"], [])
          assert_receive {:EXIT, ^pid, :normal}, 2000
        end)

      refute log =~ "corral-silent"
    end

    test "a 1 MiB line whole, a line longer than max_line_length in pieces" do
      pid =
        trap_start("sh", ["-c", "head -c 1048576 /dev/zero | tr '\\0' a; echo; printf 1234567"],
          logger_fun: fn line ->
            send(Process.whereis(:corral_daemon_test), {:size, byte_size(line)})
          end
        )

      Process.register(self(), :corral_daemon_test)
      assert_receive {:EXIT, ^pid, :normal}, 5000
      assert_received {:size, 1_048_576}
      assert_received {:size, 7}

      pid = trap_start("printf", ["abcdefghij\\nxy"], logger_fun: to_me(), max_line_length: 4)
      assert_receive {:EXIT, ^pid, :normal}, 2000
      lines = for _ <- 1..4, do: assert_receive({:line, l}, 100) && l
      assert lines == ["abcd", "efgh", "ij", "xy"]
    end

    # 1 GiB of 1000-byte lines (1,073,742 lines) as fast as `yes` writes
    # them, to a logger_fun that discards them: every line arrives, and the
    # VM's memory, both :erlang.memory(:total) and the OS's RSS of the VM,
    # never rises 64 MiB above its start. About 7 s (1 GiB through the
    # driver, the splitter and the UTF-8 check).
    @tag timeout: 300_000
    test "1 GiB written as fast as it can be: all lines logged, the VM's memory bounded" do
      gib = 1024 * 1024 * 1024
      :erlang.garbage_collect()
      before = {:erlang.memory(:total), vm_rss()}
      count = :counters.new(1, [])
      script = "yes $(printf %0999d 0) | head -c #{gib}"
      pid = trap_start("sh", ["-c", script], logger_fun: fn _ -> :counters.add(count, 1, 1) end)

      {peak_total, peak_rss} =
        Stream.repeatedly(fn ->
          receive do
            {:EXIT, ^pid, :normal} -> :done
          after
            20 -> {:erlang.memory(:total), vm_rss()}
          end
        end)
        |> Enum.take_while(&(&1 != :done))
        |> Enum.reduce(before, fn {t, r}, {pt, pr} -> {max(t, pt), max(r, pr)} end)

      assert :counters.get(count, 1) == div(gib, 1000) + 1
      assert peak_total - elem(before, 0) < 64 * 1024 * 1024
      assert peak_rss - elem(before, 1) < 64 * 1024 * 1024
    end

    test "invalid UTF-8 is made safe before log_transform, Logger and logger_fun" do
      me = self()

      log =
        capture_log(fn ->
          pid =
            trap_start("printf", ["ok\\377x\\n\\303"],
              log_output: :info,
              log_transform: fn line -> send(me, {:seen, line}) && String.upcase(line) end
            )

          assert_receive {:EXIT, ^pid, :normal}, 2000
        end)

      assert_received {:seen, "ok\uFFFDx"}
      assert_received {:seen, "\uFFFD"}
      assert log =~ "OK\uFFFDX"

      log =
        capture_log(fn ->
          pid = trap_start("printf", ["bad\\377\\n"], log_output: :info)
          assert_receive {:EXIT, ^pid, :normal}, 2000
        end)

      assert log =~ "bad\uFFFD"

      pid = trap_start("printf", ["fun\\377\\n"], logger_fun: to_me())
      assert_receive {:EXIT, ^pid, :normal}, 2000
      assert_received {:line, "fun\uFFFD"}
    end

    test "logger_fun replaces log_transform and log_prefix, as in MuonTrap" do
      me = self()

      pid =
        trap_start("echo", ["raw"],
          log_output: :info,
          log_prefix: "p: ",
          log_transform: fn line -> send(me, :transformed) && String.upcase(line) end,
          logger_fun: to_me()
        )

      assert_receive {:EXIT, ^pid, :normal}, 2000
      assert_received {:line, "raw"}
      refute_received :transformed
    end

    test "logger_fun as an MFA, logger_metadata, capture_stderr_only" do
      pid =
        trap_start("sh", ["-c", "echo out; echo err >&2"],
          capture_stderr_only: true,
          logger_metadata: [unit: :test],
          logger_fun: {__MODULE__, :mfa_logger, [self()]}
        )

      assert_receive {:EXIT, ^pid, :normal}, 2000
      assert_received {:mfa, "err", metadata}
      assert metadata[:unit] == :test
      assert metadata[:corral_cmd] == "sh"
      refute_received {:mfa, "out", _}
    end

    test "a slow logger holds the program back: the daemon's mailbox and memory stay bounded" do
      slow = :atomics.new(1, [])
      :atomics.put(slow, 1, 1)
      me = self()

      # Runs in the daemon: every 2000 lines, reports the output bytes
      # waiting in its own mailbox, then dawdles.
      logger = fn _line ->
        n = Process.get(:n, 0) + 1
        Process.put(:n, n)

        if rem(n, 2000) == 0 and :atomics.get(slow, 1) == 1 do
          {:messages, msgs} = Process.info(self(), :messages)
          bytes = for {_, {:data, _, bin}} <- msgs, reduce: 0, do: (acc -> acc + byte_size(bin))
          send(me, {:waiting, bytes})
          Process.sleep(20)
        end
      end

      pid = trap_start("yes", [], window: 65536, logger_fun: logger)

      samples =
        for _ <- 1..10 do
          Process.sleep(50)
          Process.info(pid, :memory)
        end

      :atomics.put(slow, 1, 0)
      Process.unlink(pid)
      GenServer.stop(pid)

      for {:memory, m} <- samples, do: assert(m < 1024 * 1024)

      # The chunk being logged is not acknowledged yet: what waits in the
      # mailbox is always less than the window.
      waiting = collect(:waiting)
      assert length(waiting) > 5
      assert Enum.max(waiting) < 65536
    end
  end

  # The VM's resident set size, from /proc, in bytes.
  defp vm_rss, do: rss_kb("self") * 1024

  defp collect(tag) do
    receive do
      {^tag, value} -> [value | collect(tag)]
    after
      0 -> []
    end
  end

  defp collect_messages(msg) do
    receive do
      ^msg -> [msg | collect_messages(msg)]
    after
      0 -> []
    end
  end

  def mfa_logger(line, test), do: send(test, {:mfa, line, Logger.metadata()})

  describe "functions" do
    test "os_pid, statistics, write and signal" do
      # A trapped signal interrupts dash's `read`: loop on, whatever it returns.
      script = ~s(trap 'echo reloaded' HUP; while :; do if read l; then echo "got $l"; fi; done)
      pid = trap_start("sh", ["-c", script], logger_fun: to_me())

      os_pid = Daemon.os_pid(pid)
      # cmdline reads "" until exec has copied the arguments (see the
      # MuonTrap compatibility test).
      assert eventually(fn -> File.read!("/proc/#{os_pid}/cmdline") =~ "reloaded" end)

      :ok = Daemon.write(pid, "one\n")
      assert_receive {:line, "got one"}, 2000
      :ok = Daemon.signal(pid, :sighup)
      :ok = Daemon.write(pid, "two\n")
      assert_receive {:line, "reloaded"}, 2000
      assert_receive {:line, "got two"}, 2000
      assert Daemon.signal(pid, :nope) == {:error, {:bad_signal, :nope}}

      stats = Daemon.statistics(pid)
      assert stats.output_byte_count == byte_size("got one\nreloaded\ngot two\n")
      assert stats.lines == 3
      assert stats.restarts == 0
      assert stats.started_at <= System.system_time(:millisecond)

      Process.unlink(pid)
      :ok = GenServer.stop(pid)
      refute alive?(os_pid)
    end

    test "the cgroup functions refuse a file name that is not an interface file's" do
      pid = trap_start("sleep", ["60"], [])
      assert Daemon.cgroup_config(pid) == %{}
      assert Daemon.cgget(pid, "../memory.max") == {:error, {:bad_cgroup_file, "../memory.max"}}
      assert Daemon.cgset(pid, "a/b", "1M") == {:error, {:bad_cgroup_file, "a/b"}}
    end
  end

  describe "wait_for, cd, env, arg0" do
    test "wait_for runs before the program starts; its failure is a clear error" do
      me = self()

      pid =
        trap_start("sh", ["-c", "echo started"],
          wait_for: fn -> send(me, :waited) end,
          logger_fun: fn line -> send(me, {:line, line}) end
        )

      assert_receive :waited
      assert_receive {:line, "started"}, 2000
      assert_receive {:EXIT, ^pid, :normal}, 2000

      assert {:error, {:wait_for_failed, %RuntimeError{message: "not yet"}}} =
               Daemon.start_link("true", [], wait_for: fn -> raise "not yet" end)

      assert Daemon.start_link("true", [], wait_for: fn -> {:error, :no_net} end) ==
               {:error, {:wait_for_failed, :no_net}}
    end

    test "cd, env and arg0" do
      pid =
        trap_start("sh", ["-c", "pwd; echo $CORRAL_D; echo $0"],
          cd: "/tmp",
          env: [{"CORRAL_D", "dv"}],
          arg0: "myname",
          logger_fun: to_me()
        )

      assert_receive {:EXIT, ^pid, :normal}, 2000
      assert_received {:line, "/tmp"}
      assert_received {:line, "dv"}
      assert_received {:line, "myname"}
    end
  end

  describe "readiness" do
    test "a line matching a regex, before start_link returns" do
      script = "sleep 0.2; echo booting; echo listening on 8080; sleep 60"

      {:ok, pid} =
        Daemon.start_link("sh", ["-c", script], ready: {:line, ~r/listening/}, logger_fun: to_me())

      # The lines before and including the ready one were logged already.
      assert_received {:line, "booting"}
      assert_received {:line, "listening on 8080"}
      :ok = GenServer.stop(pid)
    end

    test "a TCP port accepting connections, and a function" do
      {:ok, listen} = :gen_tcp.listen(0, [])
      {:ok, port} = :inet.port(listen)
      {:ok, pid} = Daemon.start_link("sleep", ["60"], ready: {:tcp, port})
      :ok = GenServer.stop(pid)
      :gen_tcp.close(listen)

      flag = :atomics.new(1, [])
      spawn(fn -> Process.sleep(150) && :atomics.put(flag, 1, 1) end)
      {:ok, pid} = Daemon.start_link("sleep", ["60"], ready: fn -> :atomics.get(flag, 1) == 1 end)
      assert :atomics.get(flag, 1) == 1
      :ok = GenServer.stop(pid)
    end

    test "a check that times out, or a program that exits first, is a clear error; no program is left" do
      marker = "corral-daemon-ready-#{System.unique_integer([:positive])}"

      assert Daemon.start_link("sh", ["-c", "sleep 60; : #{marker}"],
               ready: {:line, ~r/never/},
               ready_timeout: 200
             ) == {:error, {:ready_timeout, :line, 200}}

      assert pids_matching(marker) == []

      {:ok, listen} = :gen_tcp.listen(0, [])
      {:ok, port} = :inet.port(listen)
      :gen_tcp.close(listen)

      assert Daemon.start_link("sleep", ["60"], ready: {:tcp, port}, ready_timeout: 200) ==
               {:error, {:ready_timeout, {:tcp, {127, 0, 0, 1}, port}, 200}}

      assert Daemon.start_link("sh", ["-c", "exit 2"], ready: {:line, "x"}) ==
               {:error, {:exited_before_ready, 2}}
    end
  end
end
