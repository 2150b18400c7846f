defmodule Corral.Watcher do
  @moduledoc """
  Ties an OS process started by Corral to any set of Elixir processes.

  A Corral port already takes its child down with it when its owner exits.
  A watcher adds more processes: when any watched process exits, for any
  reason, the port is closed and the child's whole process tree is stopped
  (the stop signal, then SIGKILL after `kill_timeout`). The watcher ends by
  itself once the port is closed.

      {:ok, port} = :corral.open("sleep", ["600"], [])
      {:ok, _watcher} = Corral.Watcher.start(port, [client_pid])
      # client_pid exits -> sleep 600 is stopped

  This is the Erlang module `:corral_watcher`.
  """

  @doc "Starts an unlinked watcher of `port` for `pids`."
  @spec start(port(), [pid()]) :: {:ok, pid()} | {:error, {:bad_port, term()}}
  defdelegate start(port, pids), to: :corral_watcher

  @doc "Starts a watcher of `port` for `pids`, linked to the caller."
  @spec start_link(port(), [pid()]) :: {:ok, pid()} | {:error, {:bad_port, term()}}
  defdelegate start_link(port, pids), to: :corral_watcher

  @doc "Adds `pid` to the watched set; an already dead pid stops the child at once."
  @spec watch(pid(), pid()) :: :ok
  defdelegate watch(watcher, pid), to: :corral_watcher

  @doc "Removes `pid` from the watched set."
  @spec unwatch(pid(), pid()) :: :ok
  defdelegate unwatch(watcher, pid), to: :corral_watcher

  @doc "The processes being watched."
  @spec watched(pid()) :: [pid()]
  defdelegate watched(watcher), to: :corral_watcher
end
