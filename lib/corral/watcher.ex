defmodule Corral.Watcher do
  @moduledoc """
  Ties an OS process started by Corral to any set of Elixir processes.

  A Corral port already takes its child down with it when its owner exits.
  A watcher adds more processes: when any watched process exits, for any
  reason, the port is closed and the child's whole process tree is stopped
  (the stop signal, then SIGKILL after `kill_timeout`). The port's owner
  still receives the terminal message. The watcher ends by itself (reason
  `:normal`) once the port is closed.

      {:ok, port} = :corral.open("sleep", ["600"], [])
      client = spawn(fn -> receive do: (:done -> :ok) end)
      {:ok, _watcher} = Corral.Watcher.start(port, [client])

      send(client, :done)
      # The client has exited: sleep is stopped (SIGTERM).
      receive do
        {^port, {:exit_signal, 15}} -> :stopped
      end

  A watched process is given by pid or by registered name. A name is
  resolved when it is given, to `start/2` or `watch/2`: the watcher then
  follows that process, not the name. Bad arguments are returned as errors
  before any process is spawned: `{:bad_port, term}` (not an open Corral
  port), `{:bad_pid, term}`, `{:bad_pids, term}` (not a list) and
  `{:not_registered, name}`.

  Under a supervisor, `{Corral.Watcher, [port, pids]}` or
  `{Corral.Watcher, port: port, pids: pids, id: id}`; the child is
  `:temporary`, since a watcher whose port has closed has nothing left to
  watch.

  This is the Erlang module `:corral_watcher`.
  """

  @typedoc "A watched process: a pid, or a name registered when it is given."
  @type watched :: pid() | atom()

  @typedoc "Why a watcher was not started."
  @type start_error ::
          {:bad_port, term()}
          | {:bad_pid, term()}
          | {:bad_pids, term()}
          | {:not_registered, atom()}

  @doc "Starts an unlinked watcher of `port` for `pids`."
  @spec start(port(), [watched()]) :: {:ok, pid()} | {:error, start_error()}
  defdelegate start(port, pids), to: :corral_watcher

  @doc "Starts a watcher of `port` for `pids`, linked to the caller."
  @spec start_link(port(), [watched()]) :: {:ok, pid()} | {:error, start_error()}
  defdelegate start_link(port, pids), to: :corral_watcher

  @doc """
  The child spec for `[port, pids]` or `[port: port, pids: pids, id: id]`:

      %{id: :corral_watcher, start: {:corral_watcher, :start_link, [port, pids]},
        restart: :temporary, shutdown: 5000, type: :worker, modules: [:corral_watcher]}
  """
  @spec child_spec([port() | [watched()]] | keyword()) :: Supervisor.child_spec()
  defdelegate child_spec(arg), to: :corral_watcher

  @doc """
  Adds a process to the watched set; an already dead one stops the child at
  once. `{:error, :closed}` once the watcher has ended.
  """
  @spec watch(pid(), watched()) ::
          :ok | {:error, :closed | {:bad_pid, term()} | {:not_registered, atom()}}
  defdelegate watch(watcher, pid), to: :corral_watcher

  @doc "Removes a process from the watched set."
  @spec unwatch(pid(), watched()) ::
          :ok | {:error, :closed | {:bad_pid, term()} | {:not_registered, atom()}}
  defdelegate unwatch(watcher, pid), to: :corral_watcher

  @doc "The pids being watched; `[]` once the watcher has ended."
  @spec watched(pid()) :: [pid()]
  defdelegate watched(watcher), to: :corral_watcher
end
