defmodule Corral.MuonTrapCompatTest do
  # MuonTrap.Daemon's documented uses (its README and module docs: the
  # child spec forms, every option, os_pid/1, statistics/1, the restart
  # strategies and how to stop it), run against Corral through the alias a
  # MuonTrap user switches with. Where Corral differs on purpose, the test
  # says so and asserts Corral's behaviour (Corral.Daemon's moduledoc lists
  # the differences).
  use ExUnit.Case, async: false
  import Corral.Test.OS
  import Corral.Test.Daemon
  import ExUnit.CaptureLog

  alias Corral, as: MuonTrap

  # A logger handler (this module) that sends each event to a test process:
  # how a test sees the level and the metadata of a logged line.
  def log(%{msg: msg, level: level, meta: meta}, %{config: %{pid: pid}}) do
    text =
      case msg do
        {:string, s} -> IO.chardata_to_string(s)
        other -> other
      end

    send(pid, {:logged, level, text, meta})
  end

  defp with_handler(fun) do
    id = :corral_muontrap_compat
    :ok = :logger.add_handler(id, __MODULE__, %{config: %{pid: self()}, level: :all})

    try do
      capture_log(fun)
    after
      :logger.remove_handler(id)
    end
  end

  def mfa_logger(line, test, tag), do: send(test, {tag, line})

  # The os_pid of a supervisor's child, nil while it is being replaced.
  defp current_os_pid(sup, id) do
    MuonTrap.Daemon.os_pid(child_pid(sup, id))
  catch
    :exit, _ -> nil
  end

  # A child spec whose every start sends `tag` (wait_for runs before each
  # launch).
  defp counted(tag, script, restart) do
    me = self()

    Supervisor.child_spec(
      {MuonTrap.Daemon, ["sh", ["-c", script], [wait_for: fn -> send(me, tag) end]]},
      id: tag,
      restart: restart
    )
  end

  describe "MuonTrap.cmd/3 (README)" do
    test "runs a command like System.cmd/3" do
      assert MuonTrap.cmd("echo", ["hello"]) == {"hello\n", 0}

      assert MuonTrap.cmd("sh", ["-c", "echo out; echo err >&2"], stderr_to_stdout: true) ==
               {"out\nerr\n", 0}
    end
  end

  describe "child specs" do
    test "the documented form, in a supervisor, runs the program with its options" do
      children = [
        {MuonTrap.Daemon, ["sh", ["-c", "pwd; sleep 60"], [cd: "/tmp", log_output: :info]]}
      ]

      log =
        capture_log(fn ->
          {:ok, sup} = Supervisor.start_link(children, strategy: :one_for_one)
          pid = child_pid(sup, MuonTrap.Daemon)
          assert eventually(fn -> MuonTrap.Daemon.statistics(pid).output_byte_count == 5 end)
          Supervisor.stop(sup)
        end)

      # The default prefix is the command and ": ".
      assert log =~ "sh: /tmp"
    end

    test "[command, args] without options" do
      pid = start_supervised!({MuonTrap.Daemon, ["sleep", ["60"]]})
      assert alive?(MuonTrap.Daemon.os_pid(pid))
    end

    test "several daemons under one supervisor need unique ids, given with Supervisor.child_spec/2" do
      Process.flag(:trap_exit, true)

      assert {:error, {:start_spec, {:duplicate_child_name, MuonTrap.Daemon}}} =
               Supervisor.start_link(
                 [{MuonTrap.Daemon, ["sleep", ["60"]]}, {MuonTrap.Daemon, ["sleep", ["60"]]}],
                 strategy: :one_for_one
               )

      {:ok, sup} =
        Supervisor.start_link(
          [
            Supervisor.child_spec({MuonTrap.Daemon, ["sleep", ["60"]]}, id: :server1),
            Supervisor.child_spec({MuonTrap.Daemon, ["sleep", ["60"]]},
              id: :server2,
              restart: :transient
            )
          ],
          strategy: :one_for_one
        )

      restarts =
        for id <- [:server1, :server2] do
          {:ok, spec} = :supervisor.get_childspec(sup, id)
          spec.restart
        end

      assert restarts == [:permanent, :transient]

      a = MuonTrap.Daemon.os_pid(child_pid(sup, :server1))
      b = MuonTrap.Daemon.os_pid(child_pid(sup, :server2))
      assert a != b and alive?(a) and alive?(b)
      Supervisor.stop(sup)
      refute alive?(a) or alive?(b)
    end

    test "start_link/3 with :name registers the GenServer" do
      pid = trap_start("sleep", ["60"], name: :corral_compat_named)
      assert Process.whereis(:corral_compat_named) == pid
      assert is_integer(MuonTrap.Daemon.os_pid(:corral_compat_named))
      GenServer.stop(pid)
    end
  end

  describe "restart strategies (README: Supervision)" do
    @tag capture_log: true
    test ":permanent restarts after any exit, :transient after a failure, :temporary never" do
      {:ok, sup} =
        Supervisor.start_link(
          [
            counted(:perm_ok, "sleep 0.2; exit 0", :permanent),
            counted(:trans_ok, "sleep 0.2; exit 0", :transient),
            counted(:trans_fail, "sleep 0.2; exit 1", :transient),
            counted(:temp_fail, "sleep 0.2; exit 1", :temporary)
          ],
          strategy: :one_for_one,
          max_restarts: 20
        )

      for tag <- [:perm_ok, :trans_ok, :trans_fail, :temp_fail], do: assert_receive(^tag, 5000)
      # Restarted: the permanent one after status 0, the transient one after 1.
      assert_receive :perm_ok, 5000
      assert_receive :trans_fail, 5000
      Supervisor.stop(sup)
      refute_received :trans_ok
      refute_received :temp_fail
    end

    @tag capture_log: true
    test ":transient with an exit_status_to_reason that makes a status :normal" do
      me = self()

      start_supervised!(
        Supervisor.child_spec(
          {MuonTrap.Daemon,
           [
             "sh",
             ["-c", "sleep 0.1; exit 2"],
             # Status 2 means "done" for this program: no restart.
             [exit_status_to_reason: fn 2 -> :normal end, wait_for: fn -> send(me, :started) end]
           ]},
          restart: :transient
        )
      )

      assert_receive :started, 2000
      refute_receive :started, 500
    end

    @tag capture_log: true
    test "a crashed program is restarted; stopping the supervisor kills the program's children" do
      {:ok, sup} =
        Supervisor.start_link(
          [{MuonTrap.Daemon, ["sh", ["-c", "sleep 600 & wait"], [id: :tree]]}],
          strategy: :one_for_one
        )

      first = MuonTrap.Daemon.os_pid(child_pid(sup, :tree))
      assert eventually(fn -> length(children_of(first)) == 1 end)
      [grandchild] = children_of(first)
      System.cmd("kill", ["-KILL", "#{first}"])

      assert eventually(fn -> current_os_pid(sup, :tree) not in [first, nil, :error] end)

      # The old program's child went with it.
      refute alive?(grandchild)

      second = MuonTrap.Daemon.os_pid(child_pid(sup, :tree))
      assert eventually(fn -> length(children_of(second)) == 1 end)
      tree = [second | children_of(second)]
      Supervisor.stop(sup)
      assert Enum.filter(tree, &alive?/1) == []
    end
  end

  describe "stopping (README: How do I stop a MuonTrap.Daemon?)" do
    test "Supervisor.terminate_child/2" do
      {:ok, sup} =
        Supervisor.start_link([{MuonTrap.Daemon, ["sleep", ["60"]]}], strategy: :one_for_one)

      os_pid = MuonTrap.Daemon.os_pid(child_pid(sup, MuonTrap.Daemon))
      :ok = Supervisor.terminate_child(sup, MuonTrap.Daemon)
      refute alive?(os_pid)
    end

    @tag capture_log: true
    test "Process.exit/2 with any reason but :normal" do
      for reason <- [:shutdown, :kill, :oops] do
        {:ok, pid} = MuonTrap.Daemon.start_link("sleep", ["60"])
        Process.unlink(pid)
        os_pid = MuonTrap.Daemon.os_pid(pid)
        ref = Process.monitor(pid)
        Process.exit(pid, reason)
        assert_receive {:DOWN, ^ref, :process, ^pid, _}, 2000
        assert eventually(fn -> not alive?(os_pid) end), "#{inspect(reason)}: program alive"
      end
    end
  end

  describe "options" do
    test ":log_output, :log_prefix and the exit" do
      with_handler(fn ->
        pid = trap_start("echo", ["hello"], log_output: :debug, log_prefix: "[echo] ")
        assert_receive {:EXIT, ^pid, :normal}, 2000
        assert_receive {:logged, :debug, "[echo] hello", _}
      end)
    end

    test "without :log_output nothing is logged" do
      log =
        capture_log(fn ->
          pid = trap_start("echo", ["corral-compat-quiet"], [])
          assert_receive {:EXIT, ^pid, :normal}, 2000
        end)

      refute log =~ "corral-compat-quiet"
    end

    test ":log_transform formats each line; the default makes invalid UTF-8 safe" do
      with_handler(fn ->
        pid =
          trap_start("printf", ["a\\nb\\n"], log_output: :info, log_transform: &String.upcase/1)

        assert_receive {:EXIT, ^pid, :normal}, 2000
        assert_receive {:logged, :info, "printf: A", _}
        assert_receive {:logged, :info, "printf: B", _}

        pid = trap_start("printf", ["x\\303\\n"], log_output: :info)
        assert_receive {:EXIT, ^pid, :normal}, 2000
        assert_receive {:logged, :info, "printf: x\uFFFD", _}
      end)
    end

    test ":logger_metadata is merged into the metadata (corral_cmd, not muontrap_cmd)" do
      with_handler(fn ->
        pid = trap_start("echo", ["meta"], log_output: :info, logger_metadata: [unit: :eth0])
        assert_receive {:EXIT, ^pid, :normal}, 2000
        assert_receive {:logged, :info, "echo: meta", meta}
        assert meta.unit == :eth0
        # Differs: Corral's keys, and the arguments as a list.
        assert meta.corral_cmd == "echo"
        assert meta.corral_args == ["meta"]
      end)
    end

    test ":logger_fun, a function or an MFA, replaces logging and log_transform" do
      log =
        capture_log(fn ->
          pid =
            trap_start("echo", ["via fun"],
              log_output: :info,
              log_transform: &String.upcase/1,
              logger_fun: to_me()
            )

          assert_receive {:EXIT, ^pid, :normal}, 2000
          assert_received {:line, "via fun"}

          pid =
            trap_start("echo", ["via mfa"], logger_fun: {__MODULE__, :mfa_logger, [self(), :mfa]})

          assert_receive {:EXIT, ^pid, :normal}, 2000
          assert_received {:mfa, "via mfa"}
        end)

      refute log =~ "via"
    end

    test ":stderr_to_stdout and :capture_stderr_only" do
      pid = trap_start("sh", ["-c", "echo err >&2"], stderr_to_stdout: true, logger_fun: to_me())

      assert_receive {:EXIT, ^pid, :normal}, 2000
      assert_received {:line, "err"}

      pid =
        trap_start("sh", ["-c", "echo out; echo err >&2"],
          capture_stderr_only: true,
          logger_fun: to_me()
        )

      assert_receive {:EXIT, ^pid, :normal}, 2000
      assert_received {:line, "err"}
      refute_received {:line, "out"}
    end

    @tag capture_log: true
    test ":exit_status_to_reason converts a failing status; 0 is always :normal" do
      to_reason = fn status -> {:failed_with, status} end
      pid = trap_start("sh", ["-c", "exit 7"], exit_status_to_reason: to_reason)
      assert_receive {:EXIT, ^pid, {:failed_with, 7}}, 2000

      pid = trap_start("sh", ["-c", "exit 0"], exit_status_to_reason: to_reason)
      assert_receive {:EXIT, ^pid, :normal}, 2000

      # Differs: the default reason is {:exit_status, n}, not :error_exit_status.
      pid = trap_start("sh", ["-c", "exit 3"], [])
      assert_receive {:EXIT, ^pid, {:exit_status, 3}}, 2000
    end

    test ":cd, :env (nil unsets), :arg0" do
      pid =
        trap_start("sh", ["-c", ~s(pwd; echo "${CORRAL_SET}-${HOME:-unset}"; echo $0)],
          cd: "/tmp",
          env: [{"CORRAL_SET", "set"}, {"HOME", nil}],
          arg0: "renamed",
          logger_fun: to_me()
        )

      assert_receive {:EXIT, ^pid, :normal}, 2000
      assert_received {:line, "/tmp"}
      assert_received {:line, "set-unset"}
      assert_received {:line, "renamed"}
    end

    test ":delay_to_sigkill: a program that ignores SIGTERM is killed after the delay" do
      pid = trap_start("sh", ["-c", "trap '' TERM; sleep 600 & wait"], delay_to_sigkill: 200)
      os_pid = MuonTrap.Daemon.os_pid(pid)
      assert eventually(fn -> length(children_of(os_pid)) == 1 end)
      tree = [os_pid | children_of(os_pid)]
      t0 = System.monotonic_time(:millisecond)
      :ok = GenServer.stop(pid)
      # SIGTERM was ignored: only SIGKILL, after the delay, ended the tree.
      assert System.monotonic_time(:millisecond) - t0 >= 190
      assert Enum.filter(tree, &alive?/1) == []
    end

    test ":stdio_window: a small window still delivers every byte" do
      bytes = 200_000

      pid =
        trap_start("sh", ["-c", "head -c #{bytes} /dev/zero | tr '\\0' x; echo"],
          stdio_window: 1024,
          logger_fun: to_me()
        )

      assert_receive {:line, line}, 5000
      assert byte_size(line) == bytes
      assert_receive {:EXIT, ^pid, :normal}, 2000
    end

    test ":wait_for runs before the launch (differs: in init/1, and a failure fails the start)" do
      flag = :atomics.new(1, [])

      wait = fn ->
        Process.sleep(100)
        :atomics.put(flag, 1, 1)
      end

      pid =
        trap_start("sh", ["-c", "echo launched; sleep 60"], wait_for: wait, logger_fun: to_me())

      # start_link returned after wait_for: the program runs already.
      assert :atomics.get(flag, 1) == 1
      assert_receive {:line, "launched"}, 2000
      GenServer.stop(pid)

      assert {:error, {:wait_for_failed, %RuntimeError{}}} =
               MuonTrap.Daemon.start_link("true", [], wait_for: fn -> raise "db down" end)
    end
  end

  describe "functions" do
    test "os_pid/1: an integer, the program's own pid (differs: not a wrapper's)" do
      pid = trap_start("sleep", ["60"], [])
      os_pid = MuonTrap.Daemon.os_pid(pid)
      assert is_integer(os_pid)
      # The exec-status pipe closes before the kernel has copied the new
      # program's arguments (begin_new_exec closes CLOEXEC fds before
      # create_elf_tables), so cmdline can read "" for a moment.
      assert eventually(fn ->
               File.read!("/proc/#{os_pid}/cmdline") =~ ~r{^(/usr)?/bin/sleep\x0060\x00$}
             end)

      GenServer.stop(pid)
    end

    @tag capture_log: true
    test "statistics/1: output_byte_count counts the bytes the program wrote" do
      pid = trap_start("sh", ["-c", "printf 12345; echo 678 >&2; sleep 60"], log_output: :debug)
      assert eventually(fn -> MuonTrap.Daemon.statistics(pid).output_byte_count == 9 end)
      GenServer.stop(pid)
    end
  end

  # MuonTrap's cgroup options and functions, written from its README. As
  # with MuonTrap, the cgroup_base group exists before the daemon starts:
  # here the VM's own group (".").
  describe "cgroups" do
    @describetag :cgroup_memory

    setup do
      %{base: "."}
    end

    test "statistics/1 has a :cgroup map" do
      pid = trap_start("sleep", ["60"], [])
      assert %{output_byte_count: 0, cgroup: %{}} = MuonTrap.Daemon.statistics(pid)
      GenServer.stop(pid)
    end

    test "cgroup_base and cgroup: cgroup_config/1, cgroup_path/1, cgget/2, cgset/3", %{base: base} do
      pid = trap_start("sleep", ["60"], cgroup_base: base, cgroup: %{memory_max: 268_435_456})

      assert %{memory_max: 268_435_456} = MuonTrap.Daemon.cgroup_config(pid)
      path = MuonTrap.Daemon.cgroup_path(pid)
      assert is_binary(path) and path != ""
      # cgget/cgset take the hierarchy's own file names: v1's where the
      # memory controller is a v1 hierarchy.
      file =
        case MuonTrap.Daemon.cgget(pid, "memory.max") do
          {:ok, _} -> "memory.max"
          {:error, {:enoent, _}} -> "memory.limit_in_bytes"
        end

      assert {:ok, "268435456" <> _} = MuonTrap.Daemon.cgget(pid, file)
      assert :ok = MuonTrap.Daemon.cgset(pid, file, "536870912")
      assert {:ok, "536870912" <> _} = MuonTrap.Daemon.cgget(pid, file)
      stats = MuonTrap.Daemon.statistics(pid)
      assert is_integer(stats.cgroup["memory.current"])
      GenServer.stop(pid)
    end
  end

  describe "uid and gid" do
    @describetag :root

    test ":uid and :gid by name run the program as that user" do
      pid = trap_start("id", [], uid: "nobody", gid: "nogroup", logger_fun: to_me())
      assert_receive {:EXIT, ^pid, :normal}, 2000
      assert_received {:line, line}
      assert line =~ "uid=65534(nobody) gid=65534(nogroup)"
    end
  end
end
