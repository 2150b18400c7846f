defmodule Corral.WatcherTest do
  use ExUnit.Case, async: false
  import Corral.Test.OS

  # The example of the moduledoc (and the README), as written; a child that
  # were not stopped would leave the receive waiting until the test's
  # timeout.
  @tag timeout: 10_000
  test "the documented example runs as written" do
    {:ok, port} = :corral.open("sleep", ["600"], [])
    client = spawn(fn -> receive do: (:done -> :ok) end)
    {:ok, _watcher} = Corral.Watcher.start(port, [client])

    send(client, :done)
    # The client has exited: sleep is stopped (SIGTERM).
    result =
      receive do
        {^port, {:exit_signal, 15}} -> :stopped
      end

    assert result == :stopped
  end

  test "bad arguments are errors, returned at once" do
    {:ok, port} = :corral.open("sleep", ["600"], [])

    for {args, reason} <- [
          {[port, [42]], {:bad_pid, 42}},
          {[port, :nope], {:bad_pids, :nope}},
          {[port, [:corral_watcher_test_nobody]], {:not_registered, :corral_watcher_test_nobody}},
          {[self(), [self()]], {:bad_port, self()}}
        ],
        fun <- [:start, :start_link] do
      task = Task.async(Corral.Watcher, fun, args)
      assert Task.await(task, 1000) == {:error, reason}
    end

    assert {:exit_signal, 15} = :corral.stop(port)
  end

  test "a registered name is watched as the process it names" do
    {:ok, port} = :corral.open("sleep", ["600"], [])
    {:ok, os_pid} = :corral.os_pid(port)
    client = spawn(fn -> receive do: (:done -> :ok) end)
    Process.register(client, :corral_watcher_test_client)
    {:ok, watcher} = Corral.Watcher.start(port, [:corral_watcher_test_client])
    assert Corral.Watcher.watched(watcher) == [client]
    send(client, :done)
    assert_receive {^port, {:exit_signal, 15}}, 5000
    refute alive?(os_pid)
  end

  test "under a supervisor, in the list and the keyword forms" do
    {:ok, port} = :corral.open("sleep", ["600"], [])
    {:ok, os_pid} = :corral.os_pid(port)
    client = spawn(fn -> receive do: (:done -> :ok) end)
    other = spawn(fn -> receive do: (:done -> :ok) end)

    {:ok, sup} =
      Supervisor.start_link(
        [
          {Corral.Watcher, [port, [client]]},
          {Corral.Watcher, port: port, pids: [other], id: :second}
        ],
        strategy: :one_for_one
      )

    assert [{:second, w2, :worker, _}, {:corral_watcher, w1, :worker, _}] =
             Supervisor.which_children(sup)

    assert Corral.Watcher.watched(w1) == [client]
    assert Corral.Watcher.watched(w2) == [other]

    send(other, :done)
    assert_receive {^port, {:exit_signal, 15}}, 5000
    refute alive?(os_pid)
    # Both watchers end with the port and are not restarted.
    assert eventually(fn -> Supervisor.which_children(sup) == [] end)
    send(client, :done)
    :ok = Supervisor.stop(sup)
  end
end
