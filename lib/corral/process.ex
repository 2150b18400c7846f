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
  GenServer itself does, the child's whole process group is stopped. After
  the child exits, the GenServer stays up, keeping the unread output and
  the final `stats/1`, until the owner exits or `stop/1` is called.

  What can go wrong:

    * Output nobody reads stays in the window, and then in the child's pipe:
      a child that writes more than that blocks, and `await_exit/2` times
      out. Read stdout (and stderr with `stderr: :consume`) to the end.
    * Writes from a process that must also read the same child's output can
      deadlock with a large input: the child blocks on a full stdout while
      the writer is suspended on a full stdin. Write from another process.
    * Writes made after the child closed its stdin, but before the
      GenServer learned it, are dropped without an error.
  """
  use GenServer

  @typedoc "A running (or exited) child."
  @type t :: GenServer.server()

  @typedoc "Signals `kill/2` takes by name; an integer works too."
  @type signal ::
          :sigterm
          | :sigkill
          | :sigint
          | :sighup
          | :sigusr1
          | :sigusr2
          | :sigstop
          | :sigcont
          | :sigquit
          | :sigpipe
          | pos_integer()

  @typedoc "The exit status, or `128 + n` for death by signal `n`."
  @type status :: non_neg_integer()

  @signals [:sigterm, :sigkill, :sigint, :sighup, :sigusr1, :sigusr2] ++
             [:sigstop, :sigcont, :sigquit, :sigpipe]

  ## ---------------------------------------------------------------------
  ## API

  @doc """
  Starts `command` with `args`, not linked to the caller.

  Options: those of `Corral.cmd/3` that shape the child (`:cd`, `:env`,
  `:arg0`, `:clear_env`, `:kill_timeout`, `:stop_signal`, `:window`,
  `:stderr_to_stdout`), and:

    * `:stderr` — absent: copied to the VM's stderr; `:consume`: kept for
      `read_stderr/2` and `read_any/2` (it shares the window with stdout, so
      read it); `:redirect`: merged into stdout; `:discard`: dropped.
    * `:owner` — the process whose exit stops the child; the caller by
      default.
    * `:name` — registers the GenServer.

  Returns `{:error, reason}` as `:corral.open/3` does: `:enoent`,
  `{errno, stage}`, `{:bad_option, name, value}`, `{:unknown_option, name}`.
  """
  @spec start(binary(), [binary()], keyword()) :: GenServer.on_start()
  def start(command, args, opts \\ []), do: do_start(:start, command, args, opts)

  @doc "Like `start/3`, and links the GenServer to the caller."
  @spec start_link(binary(), [binary()], keyword()) :: GenServer.on_start()
  def start_link(command, args, opts \\ []), do: do_start(:start_link, command, args, opts)

  defp do_start(how, command, args, opts) do
    {owner, opts} = Keyword.pop(opts, :owner, self())
    {name, opts} = Keyword.pop(opts, :name)
    gen_opts = if name, do: [name: name], else: []
    ref = make_ref()

    # A child that cannot start is reported by message and :ignore, which
    # neither logs a crash report nor takes a linked caller down.
    case apply(GenServer, how, [__MODULE__, {command, args, opts, owner, {self(), ref}}, gen_opts]) do
      :ignore ->
        receive do
          {^ref, reason} -> {:error, reason}
        end

      other ->
        other
    end
  end

  @doc """
  Returns the next chunk of stdout, waiting up to `timeout` ms for one:
  `{:ok, binary}`, `:eof` once the child exited and all its output was read,
  or `{:error, :timeout}`. Chunks come as the OS delivered them.
  """
  @spec read(t(), timeout()) :: {:ok, binary()} | :eof | {:error, :timeout}
  def read(server, timeout \\ 5000),
    do: GenServer.call(server, {:read, :stdout, timeout}, :infinity)

  @doc """
  Like `read/2`, for stderr; needs `stderr: :consume`, and returns
  `{:error, :not_consumed}` without it.
  """
  @spec read_stderr(t(), timeout()) ::
          {:ok, binary()} | :eof | {:error, :timeout | :not_consumed}
  def read_stderr(server, timeout \\ 5000),
    do: GenServer.call(server, {:read, :stderr, timeout}, :infinity)

  @doc """
  Returns the next chunk of either stream, in the order the driver read
  them: `{:ok, {:stdout | :stderr, binary}}`, `:eof` or `{:error, :timeout}`.
  """
  @spec read_any(t(), timeout()) ::
          {:ok, {:stdout | :stderr, binary()}} | :eof | {:error, :timeout}
  def read_any(server, timeout \\ 5000),
    do: GenServer.call(server, {:read, :any, timeout}, :infinity)

  @doc """
  Writes `data` to the child's stdin from the calling process. Blocks while
  the driver's stdin queue is above 1 MiB: that is the backpressure. Writes
  from one process keep their order. Returns `{:error, :epipe}` once the
  child closed its stdin, `{:error, :stdin_closed}` after `close_stdin/1`,
  and `{:error, :closed}` once the child has exited.
  """
  @spec write(t(), iodata()) :: :ok | {:error, :epipe | :stdin_closed | :closed}
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
  def await_exit(server, timeout \\ 5000),
    do: GenServer.call(server, {:await_exit, timeout}, :infinity)

  @doc """
  Sends `signal` to the child's whole process group. Returns
  `{:error, :not_running}` after the child exited.
  """
  @spec kill(t(), signal()) :: :ok | {:error, :not_running | {:bad_signal, term()}}
  def kill(server, signal \\ :sigkill)

  def kill(server, signal) when signal in @signals or (is_integer(signal) and signal in 1..64),
    do: GenServer.call(server, {:signal, signal}, :infinity)

  def kill(_server, signal), do: {:error, {:bad_signal, signal}}

  @doc "True until the child has exited."
  @spec alive?(t()) :: boolean()
  def alive?(server) do
    GenServer.call(server, :alive?, :infinity)
  catch
    :exit, _ -> false
  end

  @doc """
  The child's OS pid, which is also its process group id. It stays known
  after the child has exited.
  """
  @spec os_pid(t()) :: pos_integer()
  def os_pid(server), do: GenServer.call(server, :os_pid, :infinity)

  @doc """
  I/O counters: `bytes_in`, `bytes_out`, `bytes_err`, `read_count`,
  `write_count`, `duration_ms`, and `exit_status` (`nil` while running).

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
    out: :queue.new(),
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
  def init({command, args, opts, owner, {starter, ref}}) do
    stderr =
      cond do
        Keyword.get(opts, :stderr_to_stdout) == true -> :merged
        Keyword.get(opts, :stderr) == :consume -> :consume
        Keyword.get(opts, :stderr) in [:redirect, :stdout] -> :merged
        Keyword.get(opts, :stderr) in [:discard, :null] -> :discard
        true -> :forward
      end

    case :corral.spawn(command, args, opts) do
      {:ok, port, os_pid} ->
        {:ok,
         %__MODULE__{
           port: port,
           os_pid: os_pid,
           owner: owner,
           owner_ref: Process.monitor(owner),
           stderr: stderr,
           started_at: System.monotonic_time(:millisecond)
         }}

      {:error, reason} ->
        send(starter, {ref, reason})
        :ignore
    end
  end

  @impl true
  def handle_call({:read, :stderr, _}, _from, %{stderr: mode} = s) when mode != :consume,
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
    do: {:reply, exit_reply(exit), s}

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
            :duration_ms
          ])

        {:error, :closed} ->
          own_stats(s)
      end

    {:reply, Map.put(stats, :exit_status, nil), s}
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

    if kind == :stderr and s.stderr == :forward do
      IO.binwrite(:standard_error, bin)
      _ = :corral.ack(port, byte_size(bin))
      {:noreply, s}
    else
      {:noreply, offer(s, kind, bin)}
    end
  end

  def handle_info({port, {:stdin_error, errno}}, %{port: port} = s),
    do: {:noreply, %{s | stdin: errno}}

  def handle_info({port, {:started, _}}, %{port: port} = s), do: {:noreply, s}

  def handle_info({port, terminal}, %{port: port} = s) do
    Process.unlink(port)

    exit =
      case terminal do
        {:exit_status, n} -> {:ok, n}
        {:exit_signal, n} -> {:ok, 128 + n}
        {:error, reason} -> {:error, reason}
      end

    s = %{s | exit: exit}
    s = %{s | final_stats: final_stats(s)}

    for {_, from, timer} <- s.exit_waiters do
      cancel(timer)
      GenServer.reply(from, exit_reply(exit))
    end

    # Output is complete, and readers wait only when nothing of their kind
    # is buffered: they all get :eof.
    for {_, from, _, timer} <- s.readers do
      cancel(timer)
      GenServer.reply(from, :eof)
    end

    {:noreply, %{s | exit_waiters: [], readers: []}}
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
  def handle_info(_, s), do: {:noreply, s}

  @impl true
  def terminate(_reason, %{port: port, exit: nil}) do
    # Stop the whole process group and wait until it is gone: stop/2 (and a
    # supervisor's shutdown) returns only after the tree is dead.
    _ = :corral.stop(port)
    :ok
  end

  def terminate(_reason, _s), do: :ok

  ## ---------------------------------------------------------------------
  ## Internals

  # A new chunk goes to the first reader that wants it, or into the buffer.
  defp offer(s, kind, bin) do
    case Enum.split_while(s.readers, fn {_, _, want, _} -> want != kind and want != :any end) do
      {before, [{_, {pid, _} = from, want, timer} | rest]} ->
        cancel(timer)

        if Process.alive?(pid) do
          GenServer.reply(from, deliver(s, want, {kind, bin}))
          %{s | readers: before ++ rest}
        else
          offer(%{s | readers: before ++ rest}, kind, bin)
        end

      {_, []} ->
        %{s | out: :queue.in({kind, bin}, s.out)}
    end
  end

  # Hands a chunk to a reader and acknowledges it, so the driver reads more.
  defp deliver(s, want, {kind, bin}) do
    _ = :corral.ack(s.port, byte_size(bin))
    if want == :any, do: {:ok, {kind, bin}}, else: {:ok, bin}
  end

  defp take(queue, :any) do
    case :queue.out(queue) do
      {{:value, chunk}, rest} -> {chunk, rest}
      {:empty, _} -> nil
    end
  end

  defp take(queue, kind) do
    case Enum.split_while(:queue.to_list(queue), fn {k, _} -> k != kind end) do
      {_, []} -> nil
      {before, [chunk | rest]} -> {chunk, :queue.from_list(before ++ rest)}
    end
  end

  defp exit_reply({:ok, status}), do: {:ok, status}
  defp exit_reply({:error, reason}), do: {:error, reason}

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

    Map.put(own_stats(s), :exit_status, status)
  end

  defp cancel(nil), do: :ok
  defp cancel(timer), do: Process.cancel_timer(timer)
end
