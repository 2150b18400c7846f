defmodule Corral.ProcessSupervisionTest do
  use ExUnit.Case, async: false
  import Corral.Test.OS
  import ExUnit.CaptureLog
  alias Corral.Process, as: Proc

  @tree Path.expand("fixtures/bin/tree", __DIR__)
  @ignore_term Path.expand("fixtures/bin/ignore_term", __DIR__)

  describe "child_spec/1" do
    test "the list forms and the keyword form" do
      assert Proc.child_spec(["sleep", ["1"]]) == %{
               id: Proc,
               start:
                 {Proc, :start_link, [["sleep", ["1"], [stop_on_exit: true, shutdown: 5000]]]},
               restart: :permanent,
               shutdown: 5000,
               type: :worker
             }

      spec = Proc.child_spec(["sleep", ["1"], [id: :s, restart: :transient, kill_timeout: 9]])
      assert %{id: :s, restart: :transient, shutdown: 5000} = spec

      assert spec.start ==
               {Proc, :start_link,
                [["sleep", ["1"], [kill_timeout: 9, stop_on_exit: true, shutdown: 5000]]]}

      spec = Proc.child_spec(command: "sleep", args: ["1"], shutdown: 200, stop_on_exit: false)
      assert %{id: Proc, restart: :permanent, shutdown: 200} = spec

      assert spec.start ==
               {Proc, :start_link, [["sleep", ["1"], [stop_on_exit: false, shutdown: 200]]]}

      assert Proc.child_spec(command: "true").start ==
               {Proc, :start_link, [["true", [], [stop_on_exit: true, shutdown: 5000]]]}

      assert_raise ArgumentError, ~r/missing_option, :command/, fn ->
        Proc.child_spec(args: ["1"])
      end

      assert_raise ArgumentError, fn -> Proc.child_spec(["sleep"]) end
    end

    test "start_link/1 takes the same forms" do
      {:ok, p} = Proc.start_link(["sh", ["-c", "exit 3"]])
      assert Proc.await_exit(p) == {:ok, 3}
      :ok = Proc.stop(p)

      {:ok, p} = Proc.start_link(command: "sh", args: ["-c", "exit 4"])
      assert Proc.await_exit(p) == {:ok, 4}
      :ok = Proc.stop(p)

      assert Proc.start_link(command: "true", lines: :yes) ==
               {:error, {:bad_option, :lines, :yes}}

      assert Proc.start_link(command: "true", shutdown: -1) ==
               {:error, {:bad_option, :shutdown, -1}}

      assert Proc.start_link(["corral-no-such-program", []]) == {:error, :enoent}
    end
  end

  describe "under a supervisor" do
    test "Supervisor.stop returns only after the program and its children are gone" do
      {:ok, sup} =
        Supervisor.start_link([{Proc, [@tree, ["2", "2"], [name: :corral_tree]]}],
          strategy: :one_for_one
        )

      pids = read_pids(:corral_tree, 7)
      {:ok, leader} = Proc.os_pid(:corral_tree)
      assert leader in pids
      assert Enum.all?(pids, &alive?/1)

      :ok = Supervisor.stop(sup)
      # No waiting here: the shutdown waited.
      assert Enum.filter(pids, &alive?/1) == []
    end

    test "background children of a shell are gone too" do
      script = "sleep 600 & sleep 600 & echo ready; wait"

      {:ok, sup} =
        Supervisor.start_link([{Proc, ["sh", ["-c", script], [name: :corral_sh]]}],
          strategy: :one_for_one
        )

      assert {:ok, "ready\n"} = Proc.read(:corral_sh)
      {:ok, sh} = Proc.os_pid(:corral_sh)
      group = [sh | children_of(sh)]
      assert length(group) == 3

      :ok = Supervisor.stop(sup)
      assert Enum.filter(group, &alive?/1) == []
    end

    test "a shutdown shorter than kill_timeout brings the SIGKILL forward" do
      # The program and its two children ignore SIGTERM. With SIGKILL only
      # after kill_timeout (60 s), the supervisor would kill the GenServer
      # after 1 s and return with the tree still running.
      opts = [name: :corral_ignore, kill_timeout: 60_000, shutdown: 1000]

      {:ok, sup} =
        Supervisor.start_link([{Proc, [@ignore_term, ["2"], opts]}], strategy: :one_for_one)

      pids = read_pids(:corral_ignore, 3, "ready")
      assert Enum.all?(pids, &alive?/1)

      :ok = Supervisor.stop(sup)
      assert Enum.filter(pids, &alive?/1) == []
    end

    test "the program is restarted when it dies, with a new OS process" do
      {:ok, sup} =
        Supervisor.start_link([{Proc, ["sleep", ["600"], [name: :corral_sleeper]]}],
          strategy: :one_for_one
        )

      [{Proc, first, :worker, _}] = Supervisor.which_children(sup)
      {:ok, os_pid} = Proc.os_pid(:corral_sleeper)
      ref = Process.monitor(first)

      log =
        capture_log(fn ->
          :ok = Proc.kill(:corral_sleeper)
          assert_receive {:DOWN, ^ref, :process, ^first, {:exit_status, 137}}, 5000

          assert eventually(fn ->
                   match?(
                     [{Proc, p, _, _}] when is_pid(p) and p != first,
                     Supervisor.which_children(sup)
                   )
                 end)
        end)

      assert log =~ "exit_status, 137"
      {:ok, new_os_pid} = Proc.os_pid(:corral_sleeper)
      assert new_os_pid != os_pid
      assert alive?(new_os_pid)
      refute alive?(os_pid)

      # A GenServer killed outright is restarted too, and its program is
      # stopped by the port closing.
      [{Proc, second, :worker, _}] = Supervisor.which_children(sup)
      Process.exit(second, :kill)
      assert eventually(fn -> not alive?(new_os_pid) end)

      assert eventually(fn ->
               match?(
                 [{Proc, p, _, _}] when is_pid(p) and p != second,
                 Supervisor.which_children(sup)
               )
             end)

      {:ok, third_os_pid} = Proc.os_pid(:corral_sleeper)
      :ok = Supervisor.stop(sup)
      refute alive?(third_os_pid)
    end

    test "a program that cannot start is a start error of the supervisor" do
      Process.flag(:trap_exit, true)

      assert {:error, {:shutdown, {:failed_to_start_child, Proc, :enoent}}} =
               Supervisor.start_link([{Proc, ["corral-no-such-program", []]}],
                 strategy: :one_for_one
               )
    end

    test ":transient restarts a failed program, not one that exited with 0" do
      spec =
        {Proc,
         [command: "sh", args: ["-c", "read x; exit $x"], name: :corral_t, restart: :transient]}

      {:ok, sup} = Supervisor.start_link([spec], strategy: :one_for_one)
      [{Proc, first, _, _}] = Supervisor.which_children(sup)

      capture_log(fn ->
        :ok = Proc.write(:corral_t, "3\n")

        assert eventually(fn ->
                 not match?([{_, ^first, _, _}], Supervisor.which_children(sup))
               end)

        assert eventually(fn ->
                 match?([{_, p, _, _}] when is_pid(p), Supervisor.which_children(sup))
               end)
      end)

      [{Proc, second, _, _}] = Supervisor.which_children(sup)
      ref = Process.monitor(second)
      :ok = Proc.write(:corral_t, "0\n")
      assert_receive {:DOWN, ^ref, :process, ^second, :normal}, 5000
      assert [{Proc, :undefined, _, _}] = Supervisor.which_children(sup)
      :ok = Supervisor.stop(sup)
    end
  end

  test "the exit of a linked caller stops the tree before the GenServer ends" do
    parent = self()

    caller =
      spawn(fn ->
        {:ok, p} = Proc.start_link(@tree, ["2", "1"])
        send(parent, {:started, p})
        receive do: (:crash -> exit(:crashed))
      end)

    assert_receive {:started, p}
    pids = read_pids(p, 3)
    ref = Process.monitor(p)
    send(caller, :crash)
    assert_receive {:DOWN, ^ref, :process, ^p, :crashed}, 5000
    # terminate/2 ran: the tree was gone before the GenServer was.
    assert Enum.filter(pids, &alive?/1) == []
  end

  test "a linked process other than the caller that fails takes the GenServer down" do
    {:ok, p} = Proc.start("sleep", ["600"])
    {:ok, os_pid} = Proc.os_pid(p)
    ref = Process.monitor(p)
    parent = self()

    link_to_p = fn last ->
      spawn(fn ->
        Process.link(p)
        send(parent, {:linked, self()})
        receive do: (:go -> exit(last))
      end)
    end

    # A normal exit of a linked process is no reason to stop.
    normal = link_to_p.(:normal)
    assert_receive {:linked, ^normal}
    send(normal, :go)
    linked = link_to_p.(:boom)
    assert_receive {:linked, ^linked}
    assert Proc.alive?(p)

    send(linked, :go)
    assert_receive {:DOWN, ^ref, :process, ^p, :boom}, 5000
    refute alive?(os_pid)
  end

  # The supervision example of the moduledoc (and the README), as written.
  test "the documented supervision example runs as written" do
    children = [
      {Corral.Process, ["sleep", ["600"], [name: MyApp.Sleeper, shutdown: 2000]]}
    ]

    {:ok, sup} = Supervisor.start_link(children, strategy: :one_for_one)
    {:ok, os_pid} = Corral.Process.os_pid(MyApp.Sleeper)
    :ok = Supervisor.stop(sup)
    # sleep is gone by now: no /proc/<os_pid>.
    refute File.exists?("/proc/#{os_pid}")
  end

  defp read_pids(server, count, tag \\ "pid", buf \\ "") do
    pids =
      for [^tag, n] <- buf |> String.split("\n") |> Enum.drop(-1) |> Enum.map(&String.split/1),
          do: String.to_integer(n)

    if length(pids) >= count do
      pids
    else
      {:ok, more} = Proc.read(server)
      read_pids(server, count, tag, buf <> more)
    end
  end
end
