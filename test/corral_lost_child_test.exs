defmodule Corral.LostChildTest do
  # Not async: it kills this VM's spawner.
  use ExUnit.Case, async: false
  import Corral.Test.OS

  test "corral:cmd/3 returns {error, Reason} when the child is lost" do
    assert {"", 0} = Corral.cmd("true", [])
    spawner = spawner_pid()
    task = Task.async(fn -> :corral.cmd("sleep", ["30"]) end)
    # Killed once the driver has the child's Fds (os_pid/1 answers): a child
    # that is only cloned is still in phase spawn, which is slower to pass
    # without clone3 and pidfds.
    assert eventually(&running_port?/0)
    System.cmd("kill", ["-9", "#{spawner}"])

    assert Task.await(task) == {:error, {:spawner_died, :running}}

    task =
      Task.async(fn ->
        try do
          Corral.cmd("sleep", ["30"])
        rescue
          e in Corral.Error -> e
        end
      end)

    assert eventually(fn -> spawner_pid() != nil and running_port?() end)
    System.cmd("kill", ["-9", "#{spawner_pid()}"])
    error = Task.await(task)
    assert error.reason == {:spawner_died, :running}
    assert Exception.message(error) == ~s(could not run "sleep": spawner_died at running)
  end

  defp running_port? do
    Enum.any?(Port.list(), &match?({:ok, pid} when pid > 0, :corral.os_pid(&1)))
  end
end
