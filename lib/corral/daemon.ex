defmodule Corral.Daemon do
  @moduledoc """
  A long-running OS program in a supervision tree, its output logged.

      children = [
        {Corral.Daemon, ["dnsmasq", ["--keep-in-foreground"], [log_output: :info]]}
      ]

      Supervisor.start_link(children, strategy: :one_for_one)

  It takes `MuonTrap.Daemon`'s arguments and options, so a MuonTrap user
  can switch with `alias Corral, as: MuonTrap`.

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
      does not go through `:exit_status_to_reason`);
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
  GenServer waits without blocking anyone; `os_pid/1` and `statistics/1`
  still answer, `write/2` returns `{:error, :closed}`). A program that
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
      `apply(m, f, [line | a])`, that gets every line (transformed, without
      the prefix) instead of Logger. Output is read with it even when
      `:log_output` is not set.
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
    * `:shutdown` — see "Supervision"; `child_spec/1` passes it on.

  `:uid`, `:gid` and the cgroup options are refused with
  `{:error, {:unsupported_option, name}}` until Corral's cgroup support
  lands; so do `cgroup_config/1`, `cgroup_path/1`, `cgget/2` and `cgset/3`
  return `{:error, :unsupported}`.
  """
  use GenServer
  require Logger

  @typedoc "A running daemon."
  @type t :: GenServer.server()

  # Options of this module's own; the rest go to corral_opts.
  @own_opts [:name, :shutdown, :start_counter]

  # How often a :ready function or TCP port is tried.
  @poll_ms 50

  # Output is split into lines this many bytes at a time.
  @slice_bytes 4096

  ## ---------------------------------------------------------------------
  ## API

  @doc """
  Starts `command` with `args` under a GenServer linked to the caller.
  Returns `{:error, reason}` without starting anything for a bad option
  (`{:bad_option, name, value}`, `{:unknown_option, name}`,
  `{:unsupported_option, name}`), a program that cannot be started
  (`:enoent`, `{errno, stage}`), and the `:wait_for` and `:ready` failures.
  """
  @spec start_link(binary(), [binary()], keyword()) :: GenServer.on_start()
  def start_link(command, args, opts \\ []) do
    with {:ok, own, opts} <- own_options(opts) do
      gen_opts = if own.name, do: [name: own.name], else: []
      ref = make_ref()

      # A start that fails is reported by message and :ignore, which
      # neither logs a crash report nor takes the caller down.
      case GenServer.start_link(__MODULE__, {command, args, opts, own, {self(), ref}}, gen_opts) do
        :ignore ->
          receive do
            {^ref, reason} -> {:error, reason}
          end

        other ->
          other
      end
    end
  end

  @doc """
  `start_link/3` with its arguments in one list, as a supervisor calls it:
  `[command, args]`, `[command, args, opts]`, or a keyword list with
  `:command`, `:args` and the options.
  """
  @spec start_link(list()) :: GenServer.on_start()
  def start_link(arg) do
    case Corral.Supervised.split_arg(arg) do
      {:ok, command, args, opts} -> start_link(command, args, opts)
      {:error, _} = error -> error
    end
  end

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

  @doc "The OS pid of the program (also its process group id)."
  @spec os_pid(t()) :: pos_integer()
  def os_pid(server), do: GenServer.call(server, :os_pid)

  @doc """
  Figures of the running program, MuonTrap's and more:

    * `output_byte_count` — bytes of output read (stdout and stderr);
    * `stdout_bytes`, `stderr_bytes`, `lines` — read and logged;
    * `started_at` — when this program was started (`System.system_time`
      in ms), `uptime_ms`;
    * `restarts` — how many times the supervisor restarted the daemon (the
      starts of its child spec minus one; 0 outside `child_spec/1`).
  """
  @spec statistics(t()) :: %{atom() => non_neg_integer()}
  def statistics(server), do: GenServer.call(server, :statistics)

  @doc """
  Writes `data` to the program's stdin, from the caller (which is suspended
  while the driver's stdin queue is full). `{:error, :closed}` once the
  program has exited.
  """
  @spec write(t(), iodata()) :: :ok | {:error, :closed}
  def write(server, data) do
    case GenServer.call(server, :port) do
      :closed -> {:error, :closed}
      port -> :corral.write(port, data)
    end
  end

  @doc """
  Sends a signal (`:sighup` to reload, `:hup`, or a number) to the
  program's process group.
  """
  @spec signal(t(), atom() | 1..64) :: :ok | {:error, :not_running | {:bad_signal, term()}}
  def signal(server, signal) do
    case :corral_opts.signal_number(signal) do
      {:ok, n} -> GenServer.call(server, {:signal, n})
      :error -> {:error, {:bad_signal, signal}}
    end
  end

  @doc "Not available until Corral's cgroup support lands: `{:error, :unsupported}`."
  @spec cgroup_config(t()) :: {:error, :unsupported}
  def cgroup_config(_server), do: {:error, :unsupported}

  @doc "Not available until Corral's cgroup support lands: `{:error, :unsupported}`."
  @spec cgroup_path(t()) :: {:error, :unsupported}
  def cgroup_path(_server), do: {:error, :unsupported}

  @doc "Not available until Corral's cgroup support lands: `{:error, :unsupported}`."
  @spec cgget(t(), String.t()) :: {:error, :unsupported}
  def cgget(_server, _variable), do: {:error, :unsupported}

  @doc "Not available until Corral's cgroup support lands: `{:error, :unsupported}`."
  @spec cgset(t(), String.t(), String.t()) :: {:error, :unsupported}
  def cgset(_server, _variable, _value), do: {:error, :unsupported}

  defp own_options(opts) when is_list(opts) do
    {own, rest} = Keyword.split(opts, @own_opts)
    own = Map.merge(%{name: nil, shutdown: :infinity, start_counter: nil}, Map.new(own))

    cond do
      not Corral.Supervised.valid_shutdown?(own.shutdown) ->
        {:error, {:bad_option, :shutdown, own.shutdown}}

      own.start_counter != nil and not counter?(own.start_counter) ->
        {:error, {:bad_option, :start_counter, own.start_counter}}

      true ->
        {:ok, own, rest}
    end
  end

  defp own_options(opts), do: {:error, {:bad_option, :options, opts}}

  defp counter?(ref) do
    match?(%{size: 1}, :counters.info(ref))
  rescue
    _ -> false
  end

  ## ---------------------------------------------------------------------
  ## GenServer

  defstruct [
    :port,
    :os_pid,
    :n,
    :lines,
    :started_at,
    :started_mono,
    :start_counter,
    ready: :none,
    stdout_bytes: 0,
    stderr_bytes: 0,
    line_count: 0
  ]

  @impl true
  def init({command, args, opts, own, {starter, ref}}) do
    # A supervisor's shutdown must run terminate/2, which stops the tree.
    Process.flag(:trap_exit, true)
    if own.start_counter, do: :counters.add(own.start_counter, 1, 1)

    with {:ok, n} <- :corral_opts.normalize(command, args, opts, :daemon),
         n = Corral.Supervised.fit_shutdown(n, own.shutdown),
         :ok <- run_wait_for(n.wait_for),
         {:ok, port, os_pid} <- :corral.spawn_normalized(n) do
      Logger.metadata(n.logger_metadata ++ [corral_cmd: command, corral_args: args])

      s = %__MODULE__{
        port: port,
        os_pid: os_pid,
        n: n,
        lines: %{stdout: :corral_lines.new(n.lines), stderr: :corral_lines.new(n.lines)},
        started_at: System.system_time(:millisecond),
        started_mono: System.monotonic_time(:millisecond),
        start_counter: own.start_counter,
        ready: n.ready
      }

      case await_ready(s) do
        {:ok, s} ->
          {:ok, s}

        {:error, reason, s} ->
          stop_program(s)
          send(starter, {ref, reason})
          :ignore
      end
    else
      {:error, reason} ->
        send(starter, {ref, reason})
        :ignore
    end
  end

  defp run_wait_for(nil), do: :ok
  defp run_wait_for(:undefined), do: :ok

  defp run_wait_for(fun) do
    case fun.() do
      {:error, reason} -> {:error, {:wait_for_failed, reason}}
      _ -> :ok
    end
  catch
    :error, e -> {:error, {:wait_for_failed, Exception.normalize(:error, e, __STACKTRACE__)}}
    kind, reason -> {:error, {:wait_for_failed, {kind, reason}}}
  end

  @impl true
  def handle_call(:os_pid, _from, s), do: {:reply, s.os_pid, s}
  # After the program exited (during :min_uptime), its port is gone.
  def handle_call(:port, _from, %{port: nil} = s), do: {:reply, :closed, s}
  def handle_call(:port, _from, s), do: {:reply, s.port, s}
  def handle_call({:signal, _}, _from, %{port: nil} = s), do: {:reply, {:error, :not_running}, s}
  def handle_call({:signal, n}, _from, s), do: {:reply, :corral.signal(s.port, n), s}

  def handle_call(:statistics, _from, s) do
    restarts = if s.start_counter, do: max(:counters.get(s.start_counter, 1) - 1, 0), else: 0

    stats = %{
      output_byte_count: s.stdout_bytes + s.stderr_bytes,
      stdout_bytes: s.stdout_bytes,
      stderr_bytes: s.stderr_bytes,
      lines: s.line_count,
      started_at: s.started_at,
      uptime_ms: System.system_time(:millisecond) - s.started_at,
      restarts: restarts
    }

    {:reply, stats, s}
  end

  @impl true
  def handle_info({port, msg}, %{port: port} = s) do
    case port_message(msg, s) do
      {:cont, s} -> {:noreply, s}
      {:exit, terminal, s} -> exit_after_min_uptime(exit_reason(terminal, s), %{s | port: nil})
    end
  end

  def handle_info({:min_uptime, reason}, s), do: {:stop, reason, s}

  def handle_info({:EXIT, port, _}, %{port: port} = s), do: {:noreply, s}

  # Trapping exits must not make links one-way: a linked process other than
  # the parent (which gen_server handles) that fails takes us down.
  def handle_info({:EXIT, _pid, :normal}, s), do: {:noreply, s}
  def handle_info({:EXIT, _pid, reason}, s), do: {:stop, reason, s}
  def handle_info(_, s), do: {:noreply, s}

  # Crash reports show the program, not the whole environment.
  @impl true
  def format_status(_opt, [_pdict, s]) do
    [data: [{~c"State", %{s | n: Map.take(s.n, [:log, :log_prefix, :window, :lines])}}]]
  end

  @impl true
  def terminate(_reason, %{port: port} = s) when port != nil, do: stop_program(s)
  def terminate(_reason, _s), do: :ok

  ## ---------------------------------------------------------------------
  ## Internals

  # A program that exits sooner than :min_uptime after its start ends the
  # GenServer only once that time has passed, so that a crash loop restarts
  # at most once per :min_uptime instead of exhausting the supervisor's
  # restart intensity in milliseconds.
  defp exit_after_min_uptime(reason, s) do
    left = s.started_mono + s.n.min_uptime - System.monotonic_time(:millisecond)

    if left > 0 do
      Process.send_after(self(), {:min_uptime, reason}, left)
      {:noreply, s}
    else
      {:stop, reason, s}
    end
  end

  defp exit_reason({:exit_status, 0}, _s), do: :normal
  defp exit_reason({:exit_status, n}, s), do: s.n.exit_status_to_reason.(n)
  defp exit_reason({:exit_signal, n}, _s), do: {:exit_signal, n}
  defp exit_reason({:error, reason}, _s), do: {:error, reason}

  # One message of the port: output is logged line by line and only then
  # acknowledged, so unlogged output never exceeds the window (plus the
  # partial line each splitter holds).
  defp port_message({:data, kind, bin}, s) do
    s = s |> count(kind, byte_size(bin)) |> log_slices(kind, bin)
    :ok = :corral.ack(s.port, byte_size(bin))
    {:cont, s}
  end

  defp port_message({:stdin_error, _}, s), do: {:cont, s}
  defp port_message({:started, _}, s), do: {:cont, s}

  defp port_message(terminal, s) do
    :corral.flush_exit(s.port)

    s =
      Enum.reduce([:stdout, :stderr], s, fn kind, s ->
        {lines, splitter} = :corral_lines.flush(s.lines[kind])
        s = %{s | lines: %{s.lines | kind => splitter}}
        Enum.reduce(lines, s, &log_line(&2, kind, &1))
      end)

    {:exit, terminal, s}
  end

  # A chunk is split a slice at a time: a chunk of short lines would
  # otherwise become a list of many thousand lines on the heap at once.
  defp log_slices(s, _kind, <<>>), do: s

  defp log_slices(s, kind, bin) do
    {slice, rest} =
      case bin do
        <<slice::binary-size(@slice_bytes), rest::binary>> -> {slice, rest}
        _ -> {bin, <<>>}
      end

    {lines, splitter} = :corral_lines.feed(slice, s.lines[kind])
    s = %{s | lines: %{s.lines | kind => splitter}}
    s = Enum.reduce(lines, s, &log_line(&2, kind, &1))
    log_slices(s, kind, rest)
  end

  defp count(s, :stdout, bytes), do: %{s | stdout_bytes: s.stdout_bytes + bytes}
  defp count(s, :stderr, bytes), do: %{s | stderr_bytes: s.stderr_bytes + bytes}

  defp log_line(s, kind, line) do
    text = line |> chomp() |> safe_utf8()

    text =
      case s.n.log_transform do
        :undefined -> text
        transform -> IO.chardata_to_string(transform.(text))
      end

    s = ready_line(s, text)

    case {s.n.logger_fun, s.n.log[kind]} do
      {_, :none} -> :ok
      {:undefined, level} -> Logger.log(level, s.n.log_prefix <> text, corral_stream: kind)
      {{m, f, a}, _} -> apply(m, f, [text | a])
      {fun, _} -> fun.(text)
    end

    %{s | line_count: s.line_count + 1}
  end

  defp chomp(line) do
    case :binary.last(line) do
      ?\n -> :binary.part(line, 0, byte_size(line) - 1)
      _ -> line
    end
  end

  # Valid UTF-8 as it is; every invalid byte (or truncated sequence at the
  # end) becomes U+FFFD, so that Logger and its handlers never see it.
  defp safe_utf8(bin) do
    if String.valid?(bin), do: bin, else: IO.iodata_to_binary(replace_invalid(bin))
  end

  defp replace_invalid(<<>>), do: []

  defp replace_invalid(bin) do
    case :unicode.characters_to_binary(bin) do
      good when is_binary(good) -> [good]
      {:error, good, <<_, rest::binary>>} -> [good, "\uFFFD" | replace_invalid(rest)]
      {:incomplete, good, _} -> [good, "\uFFFD"]
    end
  end

  defp ready_line(%{ready: {:line, mp}} = s, text) do
    if :re.run(text, mp, [{:capture, :none}]) == :match, do: %{s | ready: :ready}, else: s
  end

  defp ready_line(s, _text), do: s

  # Runs in init/1: handles the port's messages (logging them) until the
  # check passes, the program exits or the time is up.
  defp await_ready(%{ready: :none} = s), do: {:ok, s}

  defp await_ready(s) do
    check = s.ready
    deadline = System.monotonic_time(:millisecond) + s.n.ready_timeout
    ready_loop(%{s | ready: check}, check, deadline)
  end

  defp ready_loop(%{ready: :ready} = s, _check, _deadline), do: {:ok, %{s | ready: :none}}

  defp ready_loop(s, check, deadline) do
    port = s.port
    left = deadline - System.monotonic_time(:millisecond)
    wait = if match?({:line, _}, check), do: max(left, 0), else: min(max(left, 0), @poll_ms)

    receive do
      {^port, msg} ->
        case port_message(msg, s) do
          {:cont, s} ->
            ready_loop(s, check, deadline)

          {:exit, terminal, s} ->
            {:error, {:exited_before_ready, :corral.status(terminal)}, %{s | port: nil}}
        end
    after
      wait ->
        cond do
          poll(check, deadline) -> ready_loop(%{s | ready: :ready}, check, deadline)
          System.monotonic_time(:millisecond) >= deadline -> {:error, timeout_error(s), s}
          true -> ready_loop(s, check, deadline)
        end
    end
  end

  defp poll({:tcp, host, port}, deadline) do
    left = max(deadline - System.monotonic_time(:millisecond), 1)

    case :gen_tcp.connect(host, port, [], min(left, 1000)) do
      {:ok, socket} ->
        :gen_tcp.close(socket)
        true

      {:error, _} ->
        false
    end
  end

  defp poll({:call, fun}, _deadline) do
    fun.() in [true, :ok]
  catch
    _, _ -> false
  end

  defp poll({:line, _}, _deadline), do: false

  defp timeout_error(s) do
    check =
      case s.ready do
        {:line, _} -> :line
        {:tcp, host, port} -> {:tcp, host, port}
        {:call, fun} -> fun
      end

    {:ready_timeout, check, s.n.ready_timeout}
  end

  # Stops the program and logs what it still writes until its whole tree
  # is gone.
  defp stop_program(%{port: nil}), do: :ok

  defp stop_program(s) do
    _ = :corral.request_stop(s.port)
    drain(s)
  end

  defp drain(s) do
    port = s.port

    receive do
      {^port, msg} ->
        case port_message(msg, s) do
          {:cont, s} -> drain(s)
          {:exit, _terminal, _s} -> :ok
        end
    end
  end
end
