defmodule Corral.Process do
  @moduledoc """
  One child program behind a GenServer: start it, write to its stdin, read
  its output when you want it, signal it, wait for it.

      {:ok, p} = Corral.Process.start("cat", [])
      :ok = Corral.Process.write(p, "hello")
      :ok = Corral.Process.close_stdin(p)
      {:ok, "hello"} = Corral.Process.read(p)
      :eof = Corral.Process.read(p)
      {:ok, 0} = Corral.Process.await_exit(p)

  The GenServer owns the child's port and buffers its output, but only
  within the credit window (`:window`, 1 MiB by default): output is
  acknowledged to the driver as readers take it, so a slow reader slows the
  child down instead of filling memory. `write/2` runs in the caller's
  process and suspends it while the driver's stdin queue is full (1 MiB),
  which keeps the GenServer free to serve readers meanwhile.

  The child is tied to an *owner* process, the caller of `start/3` unless
  `:owner` says otherwise (see `set_owner/2`). When the owner exits, or the
  GenServer itself does, the child's whole process tree is stopped. After
  the child exits, the GenServer stays up, keeping the unread output and
  the final `stats/1`, until the owner exits or `stop/1` is called (unless
  `stop_on_exit: true`).

  ## Lines

  With `lines: true` every read returns one line with its `"\\n"`, whatever
  the chunks the OS delivered; the last line may lack the `"\\n"`. A line
  whose text is longer than `:max_line_length` bytes (default 65536) comes
  in pieces of that many bytes, as `:corral_lines` cuts it. The mode is
  chosen at start, not per read, because the GenServer splits the output as
  it arrives: the partial line it holds is not part of the window, so a
  line longer than the window cannot stall the child.

      {:ok, p} = Corral.Process.start("printf", ["one\\ntwo\\nthree"], lines: true)
      {:ok, "one\\n"} = Corral.Process.read(p)
      {:ok, "two\\n"} = Corral.Process.read(p)
      {:ok, "three"} = Corral.Process.read(p)
      :eof = Corral.Process.read(p)

  ## Supervision

  `Corral.Process` can be a supervised child: `{Corral.Process, [command,
  args]}`, `{Corral.Process, [command, args, opts]}`, or the keyword form
  `{Corral.Process, command: command, args: args, ...options}`. See
  `child_spec/1` for the spec it builds: by default the GenServer ends when
  the program exits (`stop_on_exit: true`), so that the supervisor's
  `:restart` applies to the program, and shutting it down returns only
  after the program's whole process tree is gone.

      children = [
        {Corral.Process, ["sleep", ["600"], [name: MyApp.Sleeper, shutdown: 2000]]}
      ]
      {:ok, sup} = Supervisor.start_link(children, strategy: :one_for_one)
      {:ok, os_pid} = Corral.Process.os_pid(MyApp.Sleeper)
      :ok = Supervisor.stop(sup)
      # sleep is gone by now: no /proc/<os_pid>.

  What can go wrong:

    * Output nobody reads stays in the window, and then in the child's pipe:
      a child that writes more than that blocks, and `await_exit/2` times
      out. Read stdout (and stderr with `stderr: :consume`) to the end, or
      start a child whose output nobody reads with `stdout: :discard`.
    * Writes from a process that must also read the same child's output can
      deadlock with a large input: the child blocks on a full stdout while
      the writer is suspended on a full stdin. Write from another process.
    * Writes made after the child closed its stdin, but before the
      GenServer learned it, are dropped without an error.
  """
  use GenServer

  @typedoc "A running (or exited) child."
  @type t :: GenServer.server()

  @typedoc """
  A signal by name (`:sigterm` or `:term`, as `:corral.signal/2` takes it)
  or by number.
  """
  @type signal :: atom() | 1..64

  @typedoc "The exit status, or `128 + n` for death by signal `n`."
  @type status :: non_neg_integer()

  # Options of this module's own; the rest go to corral_opts.
  @own_opts [:owner, :name, :stop_on_exit, :shutdown]

  ## ---------------------------------------------------------------------
  ## API

  @doc """
  Starts `command` with `args`, not linked to the caller.

  Options: those of `Corral.cmd/3` that shape the child (`:cd`, `:env`,
  `:arg0`, `:clear_env`, `:kill_timeout`, `:stop_signal`, `:window`,
  `:stderr_to_stdout`, `:stdout`, `:parallelism`), and:

    * `:stderr` — absent: read and copied to `:standard_error`;
      `:consume`: kept for `read_stderr/2` and `read_any/2` (it shares the
      window with stdout, so read it); `:redirect`: merged into stdout;
      `:discard`: dropped; `:inherit`: the child writes to the VM's own
      stderr. `corral_opts` takes this decision for every entry point.
    * `:lines` — `true`: reads return one line at a time (see "Lines"
      above). Default `false`: chunks as the OS delivered them.
    * `:max_line_length` — with `lines: true`, the longest line text in
      bytes before the line is cut into pieces. Default 65536.
    * `:memory_events` — `true`, or a list of `memory.events` keys
      (`:low`, `:high`, `:max`, `:oom`, `:oom_kill`, `:oom_group_kill`):
      while the child runs, the owner receives
      `{Corral.Process, pid, {:memory_events, counts}}` whenever the counts
      of the child's memory cgroup change (at most one per 100 ms, always
      the latest, the last before the exit is reported), and `stats/1`
      includes the latest as `memory_events`. Needs a memory cgroup (such
      as `cgroup: %{memory_max: bytes}`); see `:corral_opts` for the keys
      cgroup v1 has.
    * `:owner` — the process whose exit stops the child; the caller by
      default.
    * `:name` — registers the GenServer.
    * `:stop_on_exit` — when `true`, the GenServer ends as soon as the
      program exits: with reason `:normal` for status 0, and
      `{:exit_status, status}` (or `{:error, reason}` for a lost child)
      otherwise, which a supervisor counts as a crash. Unread output is
      dropped then. Default `false` (`true` in `child_spec/1`).
    * `:shutdown` — the time in ms (or `:infinity`, `:brutal_kill`) the
      GenServer is given to stop the child when it is itself stopped, as a
      supervisor's `:shutdown`. SIGKILL then comes after `:kill_timeout` or
      earlier: at most `max(shutdown - 500, div(shutdown, 2))` ms after the
      stop signal (at once with `:brutal_kill`), which leaves time for the
      tree to be reaped before the supervisor gives up. Default `:infinity`.

  Returns `{:error, reason}` as `:corral.open/3` does: `:enoent`,
  `{errno, stage}`, `{:bad_option, name, value}` (also for this module's
  own options), `{:unknown_option, name}`.
  """
  @spec start(binary(), [binary()], keyword()) :: GenServer.on_start()
  def start(command, args, opts \\ []), do: do_start(:start, command, args, opts)

  @doc "Like `start/3`, and links the GenServer to the caller."
  @spec start_link(binary(), [binary()], keyword()) :: GenServer.on_start()
  def start_link(command, args, opts \\ []), do: do_start(:start_link, command, args, opts)

  @doc """
  `start_link/3` with its arguments in one list, as a supervisor calls it:
  `[command, args]`, `[command, args, opts]`, or a keyword list with
  `:command`, `:args` (default `[]`) and the options.
  """
  @spec start_link(list()) :: GenServer.on_start()
  def start_link(arg), do: Corral.Supervised.start_link(__MODULE__, arg)

  @doc """
  The child spec for `arg`: `[command, args]`, `[command, args, opts]`, or
  a keyword list with `:command`, `:args` (default `[]`) and the options.
  The options may include the spec's `:id` (default `Corral.Process`),
  `:restart` (default `:permanent`) and `:shutdown` (default 5000 ms); the
  rest are `start/3`'s. For `["sleep", ["600"]]` it is:

      %{
        id: Corral.Process,
        start:
          {Corral.Process, :start_link,
           [["sleep", ["600"], [stop_on_exit: true, shutdown: 5000]]]},
        restart: :permanent,
        shutdown: 5000,
        type: :worker
      }

  `stop_on_exit: true` (unless given) lets `:restart` act on the program:
  `:permanent` restarts it whenever it exits, `:transient` when it exits
  with a status other than 0 or dies of a signal, `:temporary` never.
  `:shutdown` is passed to the GenServer too, so that its stop fits in it
  (see `start/3`); give it here rather than through
  `Supervisor.child_spec/2`, which cannot pass it on.
  """
  @spec child_spec(list()) :: Supervisor.child_spec()
  def child_spec(arg), do: Corral.Supervised.child_spec(__MODULE__, arg, stop_on_exit: true)

  defp do_start(how, command, args, opts) do
    with {:ok, own, opts} <- own_options(opts) do
      gen_opts = if own.name, do: [name: own.name], else: []
      ref = make_ref()
      init_arg = {command, args, opts, own, {self(), ref}}

      # A child that cannot start is reported by message and :ignore, which
      # neither logs a crash report nor takes a linked caller down.
      case apply(GenServer, how, [__MODULE__, init_arg, gen_opts]) do
        :ignore ->
          receive do
            {^ref, reason} -> {:error, reason}
          end

        other ->
          other
      end
    end
  end

  defp own_options(opts) when is_list(opts) and length(opts) >= 0 do
    # Entries that are not pairs go on to corral_opts, which names them.
    {own, rest} = Enum.split_with(opts, &match?({key, _} when key in @own_opts, &1))

    defaults = %{owner: self(), name: nil, stop_on_exit: false, shutdown: :infinity}

    own = Map.merge(defaults, Map.new(own))

    cond do
      not is_pid(own.owner) ->
        {:error, {:bad_option, :owner, own.owner}}

      not valid_name?(own.name) ->
        {:error, {:bad_option, :name, own.name}}

      not is_boolean(own.stop_on_exit) ->
        {:error, {:bad_option, :stop_on_exit, own.stop_on_exit}}

      not Corral.Supervised.valid_shutdown?(own.shutdown) ->
        {:error, {:bad_option, :shutdown, own.shutdown}}

      true ->
        {:ok, own, rest}
    end
  end

  defp own_options(opts), do: {:error, {:bad_option, :options, opts}}

  # GenServer's name forms (nil: not registered).
  defp valid_name?(name) when is_atom(name), do: true
  defp valid_name?({:global, _}), do: true
  defp valid_name?({:via, module, _}) when is_atom(module), do: true
  defp valid_name?(_), do: false

  # A bad timeout fails in the caller: in the GenServer it would end the
  # server, and the child with it.
  defguardp is_timeout(t) when t == :infinity or (is_integer(t) and t >= 0)

  @doc """
  Returns the next chunk of stdout (the next line with `lines: true`),
  waiting up to `timeout` ms for one: `{:ok, binary}`, `:eof` once the child
  exited and all its output was read, or `{:error, :timeout}`. Chunks come
  as the OS delivered them. A `timeout` other than `:infinity` or a
  non-negative integer raises `FunctionClauseError` in the caller (here
  and in `read_stderr/2`, `read_any/2` and `await_exit/2`).
  """
  @spec read(t(), timeout()) :: {:ok, binary()} | :eof | {:error, :timeout}
  def read(server, timeout \\ 5000) when is_timeout(timeout),
    do: GenServer.call(server, {:read, :stdout, timeout}, :infinity)

  @doc """
  Like `read/2`, for stderr; needs `stderr: :consume`, and returns
  `{:error, :not_consumed}` without it.
  """
  @spec read_stderr(t(), timeout()) ::
          {:ok, binary()} | :eof | {:error, :timeout | :not_consumed}
  def read_stderr(server, timeout \\ 5000) when is_timeout(timeout),
    do: GenServer.call(server, {:read, :stderr, timeout}, :infinity)

  @doc """
  Returns the next chunk (or line) of either stream, in the order the
  driver read them: `{:ok, {:stdout | :stderr, binary}}`, `:eof` or
  `{:error, :timeout}`.
  """
  @spec read_any(t(), timeout()) ::
          {:ok, {:stdout | :stderr, binary()}} | :eof | {:error, :timeout}
  def read_any(server, timeout \\ 5000) when is_timeout(timeout),
    do: GenServer.call(server, {:read, :any, timeout}, :infinity)

  @doc """
  Writes `data` to the child's stdin from the calling process. Blocks while
  the driver's stdin queue is above 1 MiB: that is the backpressure. Writes
  from one process keep their order. Returns `{:error, :epipe}` once the
  child closed its stdin, `{:error, :stdin_closed}` after `close_stdin/1`,
  `{:error, :closed}` once the child has exited, and
  `{:error, {:bad_data, data}}` for data that is not iodata (the child
  goes on).
  """
  @spec write(t(), iodata()) ::
          :ok | {:error, :epipe | :stdin_closed | :closed | {:bad_data, term()}}
  def write(server, data) do
    with {:ok, port} <- GenServer.call(server, :stdin_port, :infinity),
         :ok <- :corral.write(port, data) do
      GenServer.cast(server, {:wrote, IO.iodata_length(data)})
    end
  end

  @doc """
  Closes the child's stdin once the bytes already written by the caller are
  delivered; the child sees EOF. Its output stays readable.
  """
  @spec close_stdin(t()) :: :ok | {:error, :closed}
  def close_stdin(server) do
    case GenServer.call(server, :close_stdin, :infinity) do
      {:ok, port} ->
        # From the caller, so that it follows the caller's own writes.
        _ = :corral.close_stdin(port)
        :ok

      :ok ->
        :ok

      error ->
        error
    end
  end

  @doc """
  Waits up to `timeout` ms for the child to exit; any process may call it.
  The exit is reported after all of the child's output was read into the
  window, so a child killed with more unread output than the window still
  counts as running until you read it.
  Returns `{:ok, status}`, `{:error, :timeout}`, or `{:error, reason}` when
  the child was lost.
  """
  @spec await_exit(t(), timeout()) :: {:ok, status()} | {:error, term()}
  def await_exit(server, timeout \\ 5000) when is_timeout(timeout),
    do: GenServer.call(server, {:await_exit, timeout}, :infinity)

  @doc """
  Sends `signal` to the child's whole process group, as `:corral.signal/2`
  does: a name (`:sigterm`, or `:term`) or a number. Returns
  `{:error, :not_running}` after the child exited, and
  `{:error, {:bad_signal, signal}}` for a signal it does not know.
  """
  @spec signal(t(), signal()) :: :ok | {:error, :not_running | {:bad_signal, term()}}
  def signal(server, signal) do
    case :corral_opts.signal_number(signal) do
      {:ok, n} -> GenServer.call(server, {:signal, n}, :infinity)
      :error -> {:error, {:bad_signal, signal}}
    end
  end

  @doc "`signal/2`, with SIGKILL by default."
  @spec kill(t(), signal()) :: :ok | {:error, :not_running | {:bad_signal, term()}}
  def kill(server, signal \\ :sigkill), do: signal(server, signal)

  @doc "True until the child has exited."
  @spec alive?(t()) :: boolean()
  def alive?(server) do
    GenServer.call(server, :alive?, :infinity)
  catch
    :exit, _ -> false
  end

  @doc """
  `{:ok, os_pid}`: the child's OS pid, which is also its process group id.
  It stays known after the child has exited.
  """
  @spec os_pid(t()) :: {:ok, pos_integer()}
  def os_pid(server), do: {:ok, GenServer.call(server, :os_pid, :infinity)}

  @doc """
  I/O counters: `bytes_in`, `bytes_out`, `bytes_err`, `read_count`,
  `write_count`, `duration_ms`, and `exit_status` (`nil` while running);
  while the child runs also `cgroup`, its cgroup statistics keyed by v2
  interface file name (see `:corral.stats/1`).

  While the child runs they come from the driver (`bytes_in` counts bytes
  that reached the pipe). After it exits they are final: output counters as
  the GenServer received them, `bytes_in` and `write_count` as accepted by
  `write/2`.
  """
  @spec stats(t()) :: %{atom() => non_neg_integer() | nil}
  def stats(server), do: GenServer.call(server, :stats, :infinity)

  @doc """
  Makes `pid` the owner: the process whose exit stops the child. Only the
  current owner may hand it over.
  """
  @spec set_owner(t(), pid()) :: :ok | {:error, :not_owner}
  def set_owner(server, pid) when is_pid(pid),
    do: GenServer.call(server, {:set_owner, pid}, :infinity)

  @doc """
  Stops the GenServer. A child still running is stopped with it (the stop
  signal, then SIGKILL after `:kill_timeout`), and this returns only once
  the child's whole process tree is gone.
  """
  @spec stop(t(), timeout()) :: :ok
  def stop(server, timeout \\ :infinity), do: GenServer.stop(server, :normal, timeout)

  ## ---------------------------------------------------------------------
  ## GenServer

  defstruct [
    :port,
    :os_pid,
    :owner,
    :owner_ref,
    :stderr,
    :started_at,
    :exit,
    :final_stats,
    # The latest memory.events counts (%{} before the first) with the
    # memory_events option; nil without.
    :memory_events,
    stop_on_exit: false,
    # nil, or a :corral_lines splitter per stream.
    lines: nil,
    # Unread output per stream, as {seq, bin, owed}: seq orders the two
    # streams for read_any/2, owed is the part of bin not yet acknowledged.
    out: %{stdout: :queue.new(), stderr: :queue.new()},
    seq: 0,
    readers: [],
    exit_waiters: [],
    stdin: :open,
    bytes_in: 0,
    write_count: 0,
    bytes_out: 0,
    bytes_err: 0,
    read_count: 0
  ]

  @impl true
  def init({command, args, opts, own, {starter, ref}}) do
    # A supervisor's shutdown, and the exit of a linked caller, must run
    # terminate/2, which stops the child's tree.
    Process.flag(:trap_exit, true)

    with {:ok, n} <- :corral_opts.normalize(command, args, opts, :process),
         n = Corral.Supervised.fit_shutdown(n, own.shutdown),
         {:ok, port, os_pid} <- :corral.spawn_normalized(n) do
      {:ok,
       %__MODULE__{
         port: port,
         os_pid: os_pid,
         owner: own.owner,
         owner_ref: Process.monitor(own.owner),
         stderr: n.stderr,
         stop_on_exit: own.stop_on_exit,
         lines: splitters(n.lines),
         memory_events: if(Map.has_key?(n.request, :memory_events), do: %{}),
         started_at: System.monotonic_time(:millisecond)
       }}
    else
      {:error, reason} ->
        send(starter, {ref, reason})
        :ignore
    end
  end

  defp splitters(false), do: nil
  defp splitters(max), do: %{stdout: :corral_lines.new(max), stderr: :corral_lines.new(max)}

  @impl true
  def handle_call({:read, :stderr, _}, _from, %{stderr: mode} = s) when mode != :capture,
    do: {:reply, {:error, :not_consumed}, s}

  def handle_call({:read, kind, timeout}, from, s) do
    case take(s.out, kind) do
      {chunk, out} ->
        {:reply, deliver(s, kind, chunk), %{s | out: out}}

      nil when s.exit != nil ->
        {:reply, :eof, s}

      nil when timeout == 0 ->
        {:reply, {:error, :timeout}, s}

      nil ->
        ref = make_ref()

        timer =
          if timeout != :infinity, do: Process.send_after(self(), {:read_timeout, ref}, timeout)

        {:noreply, %{s | readers: s.readers ++ [{ref, from, kind, timer}]}}
    end
  end

  def handle_call(:stdin_port, _from, s) do
    reply =
      cond do
        s.exit != nil -> {:error, :closed}
        s.stdin == :open -> {:ok, s.port}
        true -> {:error, s.stdin}
      end

    {:reply, reply, s}
  end

  def handle_call(:close_stdin, _from, s) do
    cond do
      s.exit != nil -> {:reply, :ok, s}
      s.stdin == :open -> {:reply, {:ok, s.port}, %{s | stdin: :stdin_closed}}
      true -> {:reply, :ok, s}
    end
  end

  def handle_call({:await_exit, _}, _from, %{exit: exit} = s) when exit != nil,
    do: {:reply, exit, s}

  def handle_call({:await_exit, 0}, _from, s), do: {:reply, {:error, :timeout}, s}

  def handle_call({:await_exit, timeout}, from, s) do
    ref = make_ref()
    timer = if timeout != :infinity, do: Process.send_after(self(), {:exit_timeout, ref}, timeout)
    {:noreply, %{s | exit_waiters: [{ref, from, timer} | s.exit_waiters]}}
  end

  def handle_call({:signal, _}, _from, %{exit: exit} = s) when exit != nil,
    do: {:reply, {:error, :not_running}, s}

  def handle_call({:signal, sig}, _from, s), do: {:reply, :corral.signal(s.port, sig), s}

  def handle_call(:alive?, _from, s), do: {:reply, s.exit == nil, s}
  def handle_call(:os_pid, _from, s), do: {:reply, s.os_pid, s}

  def handle_call(:stats, _from, %{exit: nil} = s) do
    stats =
      case :corral.stats(s.port) do
        {:ok, live} ->
          Map.take(live, [
            :bytes_in,
            :bytes_out,
            :bytes_err,
            :read_count,
            :write_count,
            :duration_ms,
            :cgroup
          ])

        {:error, :closed} ->
          own_stats(s)
      end

    {:reply, stats |> Map.put(:exit_status, nil) |> put_memory_events(s), s}
  end

  def handle_call(:stats, _from, s), do: {:reply, s.final_stats, s}

  def handle_call({:set_owner, pid}, {caller, _}, %{owner: caller} = s) do
    Process.demonitor(s.owner_ref, [:flush])
    {:reply, :ok, %{s | owner: pid, owner_ref: Process.monitor(pid)}}
  end

  def handle_call({:set_owner, _}, _from, s), do: {:reply, {:error, :not_owner}, s}

  @impl true
  def handle_cast({:wrote, bytes}, s),
    do: {:noreply, %{s | bytes_in: s.bytes_in + bytes, write_count: s.write_count + 1}}

  @impl true
  def handle_info({port, {:data, kind, bin}}, %{port: port} = s) do
    s = %{s | read_count: s.read_count + 1}

    s =
      case kind do
        :stdout -> %{s | bytes_out: s.bytes_out + byte_size(bin)}
        :stderr -> %{s | bytes_err: s.bytes_err + byte_size(bin)}
      end

    cond do
      kind == :stderr and s.stderr == :forward ->
        _ = IO.binwrite(:standard_error, bin)
        _ = :corral.ack(port, byte_size(bin))
        {:noreply, s}

      s.lines == nil ->
        {:noreply, offer(s, kind, bin, byte_size(bin))}

      true ->
        {:noreply, split(s, kind, bin)}
    end
  end

  def handle_info({port, {:stdin_error, errno}}, %{port: port} = s),
    do: {:noreply, %{s | stdin: errno}}

  def handle_info({port, {:started, _}}, %{port: port} = s), do: {:noreply, s}

  def handle_info({port, {:memory_events, counts}}, %{port: port} = s) do
    send(s.owner, {__MODULE__, self(), {:memory_events, counts}})
    {:noreply, %{s | memory_events: counts}}
  end

  def handle_info({port, terminal}, %{port: port} = s) do
    :corral.flush_exit(port)

    exit =
      case :corral.status(terminal) do
        {:error, _} = error -> error
        status -> {:ok, status}
      end

    # The partial last lines are complete now; their bytes were
    # acknowledged as they came.
    s =
      case s.lines do
        nil ->
          s

        splitters ->
          Enum.reduce([:stdout, :stderr], %{s | lines: nil}, fn kind, s ->
            {lines, _} = :corral_lines.flush(splitters[kind])
            Enum.reduce(lines, s, &offer(&2, kind, &1, 0))
          end)
      end

    s = %{s | exit: exit}
    s = %{s | final_stats: final_stats(s)}

    for {_, from, timer} <- s.exit_waiters do
      cancel(timer)
      GenServer.reply(from, exit)
    end

    # Output is complete, and readers wait only when nothing of their kind
    # is buffered: they all get :eof.
    for {_, from, _, timer} <- s.readers do
      cancel(timer)
      GenServer.reply(from, :eof)
    end

    s = %{s | exit_waiters: [], readers: []}

    case {s.stop_on_exit, exit} do
      {false, _} -> {:noreply, s}
      {true, {:ok, 0}} -> {:stop, :normal, s}
      {true, {:ok, status}} -> {:stop, {:exit_status, status}, s}
      {true, error} -> {:stop, error, s}
    end
  end

  def handle_info({:read_timeout, ref}, s) do
    case List.keytake(s.readers, ref, 0) do
      {{_, from, _, _}, readers} ->
        GenServer.reply(from, {:error, :timeout})
        {:noreply, %{s | readers: readers}}

      nil ->
        {:noreply, s}
    end
  end

  def handle_info({:exit_timeout, ref}, s) do
    case List.keytake(s.exit_waiters, ref, 0) do
      {{_, from, _}, waiters} ->
        GenServer.reply(from, {:error, :timeout})
        {:noreply, %{s | exit_waiters: waiters}}

      nil ->
        {:noreply, s}
    end
  end

  def handle_info({:DOWN, ref, :process, _, _}, %{owner_ref: ref} = s) do
    {:stop, :normal, s}
  end

  def handle_info({:EXIT, port, _}, %{port: port} = s), do: {:noreply, s}

  # Trapping exits must not make links one-way: a linked process other than
  # the parent (which gen_server handles) that fails takes us down, as it
  # would without the trap.
  def handle_info({:EXIT, _pid, :normal}, s), do: {:noreply, s}
  def handle_info({:EXIT, _pid, reason}, s), do: {:stop, reason, s}

  def handle_info(_, s), do: {:noreply, s}

  @impl true
  def terminate(_reason, %{port: port, exit: nil}) do
    # Stop the whole tree and wait until it is gone: stop/2 (and a
    # supervisor's shutdown) returns only after the tree is dead.
    _ = :corral.stop(port)
    :ok
  end

  def terminate(_reason, _s), do: :ok

  ## ---------------------------------------------------------------------
  ## Internals

  # In line mode the bytes of a partial line are acknowledged as they come
  # (the splitter holds at most one line of them, outside the window), and
  # those of a complete line when it is delivered. Only the first line out
  # of a chunk can hold bytes of the earlier partial line.
  defp split(s, kind, bin) do
    splitter = s.lines[kind]
    held = :corral_lines.pending_bytes(splitter)
    {lines, splitter} = :corral_lines.feed(bin, splitter)
    s = %{s | lines: %{s.lines | kind => splitter}}

    case lines do
      [] ->
        _ = :corral.ack(s.port, byte_size(bin))
        s

      [first | rest] ->
        _ = :corral.ack(s.port, :corral_lines.pending_bytes(splitter))
        s = offer(s, kind, first, byte_size(first) - held)
        Enum.reduce(rest, s, &offer(&2, kind, &1, byte_size(&1)))
    end
  end

  # A new chunk goes to the first reader that wants it, or into the buffer.
  defp offer(s, kind, bin, owed) do
    case Enum.split_while(s.readers, fn {_, _, want, _} -> want != kind and want != :any end) do
      {before, [{_, {pid, _} = from, want, timer} | rest]} ->
        cancel(timer)

        if Process.alive?(pid) do
          GenServer.reply(from, deliver(s, want, {kind, bin, owed}))
          %{s | readers: before ++ rest}
        else
          offer(%{s | readers: before ++ rest}, kind, bin, owed)
        end

      {_, []} ->
        out = Map.update!(s.out, kind, &:queue.in({s.seq, bin, owed}, &1))
        %{s | out: out, seq: s.seq + 1}
    end
  end

  # Hands a chunk to a reader and acknowledges it, so the driver reads more.
  defp deliver(s, want, {kind, bin, owed}) do
    _ = if owed > 0, do: :corral.ack(s.port, owed)
    if want == :any, do: {:ok, {kind, bin}}, else: {:ok, bin}
  end

  defp take(out, :any) do
    case {:queue.peek(out.stdout), :queue.peek(out.stderr)} do
      {:empty, :empty} -> nil
      {{:value, {a, _, _}}, {:value, {b, _, _}}} when b < a -> take(out, :stderr)
      {:empty, _} -> take(out, :stderr)
      _ -> take(out, :stdout)
    end
  end

  defp take(out, kind) do
    case :queue.out(out[kind]) do
      {{:value, {_, bin, owed}}, rest} -> {{kind, bin, owed}, %{out | kind => rest}}
      {:empty, _} -> nil
    end
  end

  defp own_stats(s) do
    %{
      bytes_in: s.bytes_in,
      bytes_out: s.bytes_out,
      bytes_err: s.bytes_err,
      read_count: s.read_count,
      write_count: s.write_count,
      duration_ms: System.monotonic_time(:millisecond) - s.started_at
    }
  end

  defp final_stats(s) do
    status =
      case s.exit do
        {:ok, n} -> n
        {:error, _} -> nil
      end

    own_stats(s) |> Map.put(:exit_status, status) |> put_memory_events(s)
  end

  defp put_memory_events(stats, %{memory_events: nil}), do: stats
  defp put_memory_events(stats, s), do: Map.put(stats, :memory_events, s.memory_events)

  defp cancel(nil), do: :ok

  defp cancel(timer) do
    _ = Process.cancel_timer(timer)
    :ok
  end
end
