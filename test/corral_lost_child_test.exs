defmodule Corral.LostChildTest do
  # Not async: it kills this VM's spawner.
  use ExUnit.Case, async: false
  import Corral.Test.OS

  test "corral:cmd/3 returns {error, Reason} when the child is lost" do
    assert {"", 0} = Corral.cmd("true", [])
    spawner = spawner_pid()
    task = Task.async(fn -> :corral.cmd("sleep", ["30"]) end)
    assert eventually(fn -> children_of(spawner) != [] end)
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

    assert eventually(fn -> (s = spawner_pid()) && children_of(s) != [] end)
    System.cmd("kill", ["-9", "#{spawner_pid()}"])
    error = Task.await(task)
    assert error.reason == {:spawner_died, :running}
    assert Exception.message(error) == ~s(could not run "sleep": spawner_died at running)
  end
end
