defmodule Corral.Test.Daemon do
  @moduledoc false
  # What the Corral.Daemon tests and the MuonTrap compatibility tests share:
  # starting a daemon linked to the test process, finding a supervisor's
  # child, and a logger_fun that reports to the test process.

  @doc "A logger_fun that sends each line to the calling process as {tag, line}."
  def to_me(tag \\ :line) do
    me = self()
    fn line -> send(me, {tag, line}) end
  end

  @doc "Traps exits in the caller, then starts a Corral.Daemon linked to it; returns its pid."
  def trap_start(cmd, args, opts) do
    Process.flag(:trap_exit, true)
    {:ok, pid} = Corral.Daemon.start_link(cmd, args, opts)
    pid
  end

  @doc "The pid of supervisor `sup`'s child `id`, nil while it has none."
  def child_pid(sup, id) do
    Enum.find_value(Supervisor.which_children(sup), fn
      {^id, pid, _, _} when is_pid(pid) -> pid
      _ -> nil
    end)
  end
end
