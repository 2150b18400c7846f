defmodule Corral.Daemon do
  @moduledoc """
  A long-running OS program in a supervision tree, its output logged.

      children = [
        {Corral.Daemon, ["dnsmasq", ["--keep-in-foreground"], [log_output: :info]]}
      ]

      Supervisor.start_link(children, strategy: :one_for_one)

  It takes `MuonTrap.Daemon`'s arguments and options, so a MuonTrap user
  can switch with `alias Corral, as: MuonTrap`. The implementation is the
  Erlang `:corral_daemon` (same options, as a proplist or map), which logs
  through Erlang's `:logger`; Elixir's Logger receives those events.

  ## Supervision

  `child_spec/1` takes `[command, args]`, `[command, args, opts]` or a
  keyword list with `:command`, `:args` (default `[]`) and the options; the
  options may hold the spec's `:id` (default `Corral.Daemon`), `:restart`
  (default `:permanent`) and `:shutdown` (default 5000 ms).

  The GenServer ends when the program exits, with reason:

    * `:normal` for exit status 0, so `restart: :transient` restarts the
      program on failure only, and `:temporary` never;
    * `exit_status_to_reason.(status)` for another status, by default
      `{:exit_status, status}`;
    * `{:exit_signal, n}` when the program died of signal `n` (this reason
      does not go through `:exit_status_to_reason`), and
      `{:exit_signal, n, :oom_kill}` when the OOM killer killed it (a
      `:cgroup` memory limit was hit);
    * `{:error, reason}` when the program was lost (e.g. the spawner died).

  Stopping the GenServer (a supervisor's shutdown, `GenServer.stop/1`)
  stops the program's whole process tree and returns only once it is gone:
  a restart never overlaps the old instance. SIGKILL follows the stop
  signal after `:kill_timeout` (alias `:delay_to_sigkill`), lowered so that
  it fits in `:shutdown` (see `Corral.Process.start/3`). Output the program
  writes while it stops is still logged. If the GenServer is killed
  brutally, the program's tree is stopped all the same, without anyone
  waiting for it.

  ## Crash loops

  A program that fails at once is restarted at once, and a supervisor that
  sees more than `:max_restarts` (default 3) restarts in `:max_seconds`
  (default 5) gives up and takes its other children down. With
  `min_uptime: ms`, an exit sooner than `ms` after the program's start
  ends the GenServer only when `ms` have passed since that start (the
  GenServer waits without blocking anyone; `statistics/1` still answers,
  `os_pid/1` returns `:error` and `write/2` `{:error, :closed}`). A program that
  fails at once is then restarted once per `ms`: with the supervisor's
  defaults, `min_uptime: 2000` keeps a failing daemon retrying forever
  without taking its siblings down.

      {Corral.Daemon, ["flaky", [], [min_uptime: 2000]]}

  ## Logging

  Output is split into lines (`:corral_lines`), each logged without its
  `"\\n"` as `log_prefix <> line` at the stream's level, with the metadata
  `corral_stream: :stdout | :stderr`. A line longer than
  `:max_line_length` bytes (default 1 MiB) is logged in pieces of that
  size; the last line is logged at exit even without a `"\\n"`. Invalid
  UTF-8 is replaced by U+FFFD before `:log_transform` and Logger see it.
  Elixir's Logger truncates messages to its `:truncate` setting (8 KiB by
  default); `:logger_fun` gets the line whole.

  Output is acknowledged to the driver only after its lines were logged:
  a program that writes faster than Logger (or `:logger_fun`) takes it is
  held back in its own pipe, and the GenServer never holds more than the
  credit window (`:window`, alias `:stdio_window`, 1 MiB) of unlogged
  output plus one partial line per stream.

  A stream that is not logged is not read: stdout goes to /dev/null, and
  stderr to the VM's own stderr, as MuonTrap leaves it.

  ## Coming from MuonTrap.Daemon

  With `alias Corral, as: MuonTrap`, `MuonTrap.Daemon` is this module and
  its child specs, options and functions keep their meaning
  (test/corral_muontrap_compat_test.exs runs MuonTrap's documented uses).
  Where Corral differs, on purpose:

    * `os_pid/1` is the program's pid, not a wrapper's; like MuonTrap's it
      is an integer, or `:error` when there is no program.
    * A status other than 0 stops the GenServer with
      `{:exit_status, status}` by default (MuonTrap: `:error_exit_status`),
      and a death by signal with `{:exit_signal, n}`. Both are failures, so
      the restart strategies behave alike.
    * `:shutdown` defaults to 5000 ms (MuonTrap: 500), and stopping waits
      until the whole tree is gone. Give `:shutdown` in the options: one
      set only through `Supervisor.child_spec/2` is not seen by the
      GenServer, which then fits SIGKILL into 5000 ms.
    * `:wait_for` runs in `init/1`: the supervisor waits for it, and a
      failure is a failed start, `{:error, {:wait_for_failed, reason}}`
      (MuonTrap runs it in a linked task after `start_link` returns).
    * A program that cannot be started fails the start with
      `{:error, reason}` instead of raising in `init/1`.
    * Lines are never cut short (MuonTrap keeps 256 bytes of a partial
      line), invalid UTF-8 is replaced even for `:logger_fun`, and the
      default `:stdio_window` is 1 MiB (MuonTrap: 10 KB).
    * The metadata keys are `corral_cmd` and `corral_args` (the list), not
      `muontrap_cmd` and `muontrap_args`; no "Process exited" line is
      logged (the exit reason says it).

  ## Options

  Those of the program, as for `Corral.cmd/3`: `:cd`, `:env`, `:arg0`,
  `:clear_env`, `:stdin` (`:pipe`, the default, for `write/2`, or `:null`),
  `:stderr` (`:discard`, `:inherit`), `:kill_timeout`/`:delay_to_sigkill`,
  `:stop_signal`, `:window`/`:stdio_window`, `:pipe_size`,
  `:stderr_to_stdout`; and:

    * `:name` — registers the GenServer.
    * `:log_output` — the Logger level of the output's lines; `nil` (the
      default) logs nothing.
    * `:log_stderr_level` — the level of stderr's lines, when it should
      differ; `:none` sends stderr to /dev/null. Default: `:log_output`'s.
    * `:log_prefix` — put before each logged line. Default:
      `"\#{command}: "`.
    * `:log_transform` — a function from a line (valid UTF-8) to the text
      to log.
    * `:logger_metadata` — a keyword list added to the GenServer's Logger
      metadata, with `corral_cmd` and `corral_args`.
    * `:logger_fun` — a function of one argument, or `{m, f, a}` called as
      `apply(m, f, [line | a])`, that gets every line instead of Logger. As
      with MuonTrap, it replaces `:log_output`, `:log_prefix` and
      `:log_transform`: it gets the line as read (made valid UTF-8), and
      output is read even when `:log_output` is not set.
    * `:capture_stderr_only` — log stderr only; stdout goes to /dev/null.
    * `:max_line_length` — see "Logging". Default 1 MiB.
    * `:exit_status_to_reason` — see "Supervision".
    * `:wait_for` — a function of no arguments run in `init/1` before the
      program starts. The supervisor waits for it (it starts children in
      order, and a child after the daemon may rely on the program running),
      but no longer: the program starts as soon as it returns. If it
      raises, throws, exits or returns `{:error, reason}`, the start fails
      with `{:error, {:wait_for_failed, reason}}` and no program is started.
    * `:ready` — checked before `start_link` returns, so that the
      supervisor starts the children after the daemon once the program
      serves: `{:line, regex}` (a line of output matches; the line is
      logged too), `{:tcp, port}` or `{:tcp, host, port}` (a connection is
      accepted), or a function of no arguments polled every 50 ms until it
      returns `true` or `:ok`.
    * `:ready_timeout` — ms for `:ready`; default 10000. On expiry the
      program's tree is stopped and the start fails with
      `{:error, {:ready_timeout, check, ms}}`; a program that exits first
      fails it with `{:error, {:exited_before_ready, status}}`.
    * `:min_uptime` — see "Crash loops". Default 0.
    * `:memory_events` — `true`, or a list of `memory.events` keys (see
      `Corral.Process`): while the program runs, a warning is logged
      whenever its `high`, `max`, `oom`, `oom_kill` or `oom_group_kill`
      count goes up (at most one per 100 ms), naming what went up, and
      `statistics/1` has the latest counts. Needs a memory cgroup, such as
      `cgroup: %{memory_max: bytes}`.
    * `:shutdown` — see "Supervision"; `child_spec/1` passes it on.

  `:uid` and `:gid` (a number or a name, as MuonTrap takes them) and the
  other identity and limit options are those of `Corral.cmd/3`, and so are
  the cgroup options (`:cgroup`, `:cgroup_base`, `:cgroup_path`,
  `:cgroup_controllers`, `:cgroup_sets`).
  """

  # The implementation is the Erlang :corral_daemon (a gen_server, logging
  # through :logger, which Elixir's Logger receives); this module adds
  # Elixir's argument forms and documentation.

  @typedoc "A running daemon."
  @type t :: GenServer.server()

  ## ---------------------------------------------------------------------
  ## API

  @doc """
  Starts `command` with `args` under a GenServer linked to the caller.
  Returns `{:error, reason}` without starting anything for a bad option
  (`{:bad_option, name, value}`, `{:unknown_option, name}`), a program that cannot be started
  (`:enoent`, `{errno, stage}`), and the `:wait_for` and `:ready` failures.
  """
  @spec start_link(binary(), [binary()], keyword()) :: GenServer.on_start()
  def start_link(command, args, opts \\ []) when is_list(opts),
    do: :corral_daemon.start_link(command, args, opts)

  @doc """
  `start_link/3` with its arguments in one list, as a supervisor calls it:
  `[command, args]`, `[command, args, opts]`, or a keyword list with
  `:command`, `:args` and the options.
  """
  @spec start_link(list()) :: GenServer.on_start()
  def start_link(arg), do: Corral.Supervised.start_link(__MODULE__, arg)

  @doc """
  The child spec for `arg` (see "Supervision"). For `["sleep", ["600"]]`:

      %{
        id: Corral.Daemon,
        start:
          {Corral.Daemon, :start_link,
           [["sleep", ["600"], [start_counter: counter, shutdown: 5000]]]},
        restart: :permanent,
        shutdown: 5000,
        type: :worker
      }

  `counter` (a `:counters` reference) counts the starts of this spec, for
  the `restarts` of `statistics/1`.
  """
  @spec child_spec(list()) :: Supervisor.child_spec()
  def child_spec(arg),
    do: Corral.Supervised.child_spec(__MODULE__, arg, start_counter: :counters.new(1, []))

  @doc """
  The OS pid of the program (also its process group id), or `:error` once
  the program has exited while the GenServer waits out `:min_uptime` (the
  pid may then belong to another process).

  This is `MuonTrap.Daemon.os_pid/1`'s contract (an integer, or `:error`),
  for drop-in use; `Corral.Process.os_pid/1` returns `{:ok, pid}` instead.
  Unlike MuonTrap's, the pid is the program's own, not a wrapper's.
  """
  @spec os_pid(t()) :: pos_integer() | :error
  defdelegate os_pid(server), to: :corral_daemon

  @doc """
  Figures of the running program, MuonTrap's and more:

    * `output_byte_count` — bytes of output read (stdout and stderr);
    * `stdout_bytes`, `stderr_bytes`, `lines` — read and logged;
    * `started_at` — when this program was started (`System.system_time`
      in ms), `uptime_ms`;
    * `restarts` — how many times the supervisor restarted the daemon (the
      starts of its child spec minus one; 0 outside `child_spec/1`);
    * `cgroup` — the program's cgroup statistics keyed by cgroup v2
      interface file name, v1 values translated (`"memory.current"`,
      `"memory.peak"`, `"memory.events"`, `"cpu.stat"`, `"pids.current"`,
      `"pids.peak"`, the pressure files), each where its groups have it;
      `%{}` while not running;
    * `memory_events` — with the `:memory_events` option only: the latest
      `memory.events` counts of the program's memory cgroup (`%{}` before
      the first notice).
  """
  @spec statistics(t()) :: %{atom() => non_neg_integer() | map()}
  defdelegate statistics(server), to: :corral_daemon

  @doc """
  Writes `data` to the program's stdin, from the caller (which is suspended
  while the driver's stdin queue is full). `{:error, :closed}` when the
  program has exited but the GenServer has not ended yet (see
  `:min_uptime`); once it has ended, the call exits as `GenServer.call/2`
  does. Data that is not iodata is `{:error, {:bad_data, data}}`.
  """
  @spec write(t(), iodata()) :: :ok | {:error, :closed | {:bad_data, term()}}
  defdelegate write(server, data), to: :corral_daemon

  @doc """
  Sends a signal (`:sighup` to reload, `:hup`, or a number) to the
  program's process group.
  """
  @spec signal(t(), atom() | 1..64) :: :ok | {:error, :not_running | {:bad_signal, term()}}
  defdelegate signal(server, signal), to: :corral_daemon

  @doc """
  The `:cgroup` option the daemon was started with, as given, so that a
  running daemon's settings can start another (`%{}` without one).
  """
  @spec cgroup_config(t()) :: map()
  defdelegate cgroup_config(server), to: :corral_daemon

  @doc """
  The directory of the program's leaf cgroup (the v2 one; on a host
  without a v2 tree the first v1 one), or `{:error, :not_running}` /
  `{:error, :no_cgroup}`.
  """
  @spec cgroup_path(t()) :: String.t() | {:error, :not_running | :no_cgroup}
  defdelegate cgroup_path(server), to: :corral_daemon

  @doc """
  Reads one interface file of the program's cgroups, such as
  `"memory.peak"`: of its v2 leaf when that has the file, else of the v1
  leaf that does. A v2 name whose controller is on v1 is translated
  (`"memory.max"` reads `memory.limit_in_bytes`, in v2 form; see
  `:corral_cgroup.get/2`). A name with `/` or `..` is `{:error,
  {:bad_cgroup_file, name}}`; a file none has is `{:error, {:enoent,
  name}}`.
  """
  @spec cgget(t(), String.t()) :: {:ok, binary()} | {:error, term()}
  defdelegate cgget(server, variable), to: :corral_daemon

  @doc "Writes one interface file of the program's cgroups (found as `cgget/2` does)."
  @spec cgset(t(), String.t(), String.t() | integer()) :: :ok | {:error, term()}
  defdelegate cgset(server, variable, value), to: :corral_daemon
end
