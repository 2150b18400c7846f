defmodule Corral do
  @moduledoc """
  Run operating-system programs from Elixir, contained.

  `cmd/3` is a drop-in for `System.cmd/3` and `MuonTrap.cmd/3`: the same
  options and return shape, plus stdin input, a timeout that kills the whole
  process tree, and an output cap. Output is read with a credit window, so a
  child that writes faster than you consume waits in its pipe instead of
  filling your mailbox.

  The Erlang API (`:corral`) is complete on its own; this module is a thin
  layer over it.
  """

  @typedoc "Why a command could not be run, as returned by the Erlang API."
  @type reason :: term()

  @typedoc """
  A signal, by name (`:sigterm`, also `:term`) or number: the
  `:stop_signal` option and `:corral.signal/2` take it.
  """
  @type signal :: atom() | 1..64

  @typedoc """
  Every option of `cmd/3`, `stream!/3` and `stream/3`, with its value type
  (the Erlang API's `t::corral_opts.option/0`, with `:into`). Which
  function takes which is listed in their docs; `:delay_to_sigkill` and
  `:stdio_window` are MuonTrap's names for `:kill_timeout` and `:window`.
  """
  @type option ::
          {:into, Collectable.t()}
          | {:cd, binary()}
          | {:env, Enumerable.t()}
          | {:arg0, binary()}
          | {:stderr_to_stdout, boolean()}
          | {:parallelism, boolean()}
          | {:clear_env, boolean()}
          | {:stdin, :pipe | :null}
          | {:stdout, :pipe | :null | :discard}
          | {:stderr, :pipe | :consume | :inherit | :redirect | :stdout | :discard | :null}
          | {:kill_timeout, non_neg_integer()}
          | {:delay_to_sigkill, non_neg_integer()}
          | {:stop_signal, signal()}
          | {:window, pos_integer()}
          | {:stdio_window, pos_integer()}
          | {:pipe_size, non_neg_integer()}
          | {:timeout, pos_integer() | :infinity | nil}
          | {:max_output_size, pos_integer() | :infinity | nil}
          | {:capture_stderr_only, boolean()}
          | {:input, iodata() | Enumerable.t() | (sink() -> term()) | nil}
          | {:ignore_epipe, boolean()}
          | {:lines, boolean()}
          | {:max_line_length, pos_integer()}
          | {:uid, non_neg_integer() | String.t() | nil}
          | {:gid, non_neg_integer() | String.t() | nil}
          | {:groups, [non_neg_integer() | String.t()] | nil}
          | {:rlimits, %{atom() => rlimit()} | [{atom(), rlimit()}]}
          | {:nice, -20..19 | nil}
          | {:umask, 0..0o777 | nil}
          | {:no_new_privs, boolean()}

  @typedoc """
  A resource limit of the `:rlimits` option: one value for both the soft and
  the hard limit, or `{soft, hard}`; each a non-negative integer or
  `:infinity`.
  """
  @type rlimit ::
          non_neg_integer()
          | :infinity
          | {non_neg_integer() | :infinity, non_neg_integer() | :infinity}

  @typedoc """
  The sink an `:input` function writes with: `:ok`, `{:error, :epipe}` once
  the child closed its stdin (`:ok` with `ignore_epipe: true`), or
  `{:error, :closed}` once the child is gone.
  """
  @type sink :: (iodata() -> :ok | {:error, atom()})

  @doc """
  Runs `command` with `args` and returns `{collectable, status}`.

  `status` is the exit status, `128 + n` when the child died of signal `n`,
  `:timeout` when `:timeout` ms passed (the whole process tree is dead by
  the time this returns), or `:max_output_exceeded` when the output reached
  `:max_output_size` bytes (the collectable then holds exactly that many).

  ## Options

  From `System.cmd/3`: `:into` (default `""`), `:cd`, `:env` (a `nil` value
  unsets the variable), `:arg0`, `:stderr_to_stdout`, `:parallelism`
  (the port's flag, as there; the VM's `+spp` default otherwise).

  From MuonTrap: `:timeout` (ms), `:delay_to_sigkill` (ms between the stop
  signal and SIGKILL, default 5000; `:kill_timeout` is the same),
  `:stdio_window` (unacknowledged output bytes, default 1 MiB; `:window`
  is the same), `:capture_stderr_only`, and the cgroup options: `:cgroup`
  (a map of limits: `cpu_weight`, `cpu_max` (`{quota_us, period_us}` or
  `:max`), `cpu_idle`, `memory_min`, `memory_low`, `memory_high`,
  `memory_max`, `memory_swap_max`, `memory_oom_group`, `pids_max`,
  `io_weight`, `cpuset_cpus`, `cpuset_mems`, or a raw interface file
  `"memory.max" => value`), `:cgroup_base` (the child's fresh leaf goes
  beneath this existing group, relative to the VM's own group),
  `:cgroup_path` (the child's own leaf, made for it), and MuonTrap 1's
  `:cgroup_controllers` and `:cgroup_sets` (`{controller, file, value}`).
  Each controller goes where the host has it: cgroup v2 when the VM's v2
  group delegates it, else its v1 hierarchy (the files translated:
  `memory_max` is `memory.limit_in_bytes` there). A child the OOM killer
  killed ends with status 137 here, and with `{port, {:exit_signal, 9,
  :oom_kill}}` on a port.

  Corral's own: `:input` (a binary, iodata, any `Enumerable` of iodata, or
  a function given a sink `fn iodata -> :ok | {:error, reason} end`;
  written to stdin, which is then closed; without it stdin is closed at
  once), `:max_output_size` (bytes), `:stderr` (absent: the child writes
  to the VM's own stderr, as with `System.cmd/3`; `:consume`: read by
  Corral and printed through `:standard_error`, so `capture_io(:stderr, ...)`
  sees it; `:redirect` or `:discard`), `:stop_signal`, `:clear_env`.

  Identity and limits (every function that starts a program takes them:
  `stream!/3`, `stream/3`, `Corral.Process`, `Corral.Daemon`, `:corral.open/3`):

    * `:uid` — the user the program runs as: a number or a user name.
      Without `:gid`, the user's primary group; without `:groups`, the
      user's supplementary groups, as `su` and `runuser` set them (never the
      VM's). A number without a user in the passwd database needs `:gid`.
      Needs privilege (root, or CAP_SETUID and CAP_SETGID).
    * `:gid` — the group: a number or a group name. Alone it changes only
      the group; the supplementary groups stay the VM's.
    * `:groups` — the supplementary groups, numbers or names (`[]` for
      none), replacing the user's or the VM's.
    * `:rlimits` — resource limits, a map or keyword list, such as
      `%{nofile: 1024, core: 0, as: {:infinity, :infinity}}`: one value
      sets the soft and the hard limit, `{soft, hard}` each; values are
      non-negative integers or `:infinity`. Resources: `:as`, `:core`,
      `:cpu`, `:data`, `:fsize`, `:locks`, `:memlock`, `:msgqueue`,
      `:nice`, `:nofile`, `:nproc`, `:rss`, `:rtprio`, `:rttime`,
      `:sigpending`, `:stack`. Without `:nofile` the program gets the open
      file limit the VM had (the spawner raises its own).
    * `:nice` — -20..19; below the VM's needs privilege.
    * `:umask` — such as `0o027`.
    * `:no_new_privs` — `true`: the program and its children can never
      gain privileges through `execve` (setuid bits, file capabilities).

  Names are looked up when the program starts, by the spawner. An unknown
  name fails the start with `{:enoent, :uid}` (`:gid`, `:groups`); each
  step's failure names the step: `{:eperm, :setuid}`, `{:eperm, :setgid}`,
  `{:eperm, :setgroups}`, `{:eperm, :rlimit}`, `{:eacces, :nice}`,
  `{:einval, :no_new_privs}` (`cmd/3` raises `Corral.Error` with it). `:cd`
  is entered as the new user, so a directory that user may not enter fails
  with `{:eacces, :chdir}`.

  `:env` is any enumerable of `{name, value}` pairs (a map, a keyword-like
  list); `command`, `args`, `:cd`, `:arg0` and env names and values are
  binaries, as for `System.cmd/3`.

  Errors are those of `System.cmd/3`, naming `Corral.cmd/3`: a missing
  executable raises `ErlangError` with `:enoent`; a NUL byte in the program
  raises `ArgumentError` ("cannot execute Corral.cmd/3 for program with
  null byte, got: ..."), and likewise in `args`, `:cd`, `:arg0` or `:env`
  (naming the option); a non-binary argument, "all arguments for
  Corral.cmd/3 must be binaries"; a bad value, "invalid option :cd with
  value ..."; an unknown option, "unknown option :name". Any other failure
  to start the child (a bad `:cd`, a file that is not executable, an
  unknown `:uid`) raises `Corral.Error`.

      iex> Corral.cmd("echo", ["hello"])
      {"hello\\n", 0}

      iex> Corral.cmd("sh", ["-c", "exit 3"])
      {"", 3}

      iex> Corral.cmd("cat", [], input: ["a", ?b, "c"])
      {"abc", 0}
  """
  @spec cmd(binary(), [binary()], [option()]) ::
          {Collectable.t(), non_neg_integer() | :timeout | :max_output_exceeded}
  def cmd(command, args, opts \\ []) when is_binary(command) and is_list(args) do
    opts = validate!(command, args, opts, "Corral.cmd/3")
    {into, opts} = Keyword.pop(opts, :into, "")
    opts = Keyword.update(opts, :input, nil, &input_option/1)
    {acc, collector} = Collectable.into(into)
    fold = fn chunk, acc -> collector.(acc, {:cont, chunk}) end

    result =
      try do
        :corral.cmd(command, args, [{:fold, {fold, acc}} | opts])
      catch
        kind, reason ->
          collector.(acc, :halt)
          :erlang.raise(kind, reason, __STACKTRACE__)
      end

    case result do
      {:error, reason} ->
        collector.(acc, :halt)
        raise_error(reason, command, args, opts, "Corral.cmd/3")

      {acc, status} ->
        {collector.(acc, :done), status}
    end
  end

  @doc false
  # The checks System.cmd/3 makes in Elixir, before the Erlang API's own:
  # binaries only, NUL bytes, env as any enumerable of pairs. Returns the
  # options with `:env` as a list. `operation` names the function in
  # messages.
  @spec validate!(binary(), [binary()], [option()], String.t()) :: keyword()
  def validate!(command, args, opts, operation) do
    no_null_byte!(command, "program", operation)

    # An improper list is refused here rather than by a FunctionClauseError
    # deep in Enum.
    unless proper_list?(args) and Enum.all?(args, &is_binary/1) do
      raise ArgumentError, "all arguments for #{operation} must be binaries"
    end

    Enum.each(args, &no_null_byte!(&1, ":args", operation))

    unless proper_list?(opts) and Enum.all?(opts, &match?({key, _} when is_atom(key), &1)) do
      raise ArgumentError,
            "expected a keyword list of options for #{operation}, got: #{inspect(opts)}"
    end

    Enum.map(opts, fn
      {key, value} when key in [:cd, :arg0] and is_binary(value) ->
        no_null_byte!(value, inspect(key), operation)
        {key, value}

      {key, value} when key in [:cd, :arg0] ->
        raise ArgumentError, "invalid option #{inspect(key)} with value #{inspect(value)}"

      {:env, env} ->
        {:env, env_option(env, operation)}

      other ->
        other
    end)
  end

  defp proper_list?([]), do: true
  defp proper_list?([_ | tail]), do: proper_list?(tail)
  defp proper_list?(_), do: false

  defp env_option(env, operation) do
    if Enumerable.impl_for(env) == nil do
      raise ArgumentError, "invalid option :env with value #{inspect(env)}"
    end

    Enum.map(env, fn
      {key, value} = entry when is_binary(key) and (is_binary(value) or is_nil(value)) ->
        no_null_byte!(key, ":env", operation, entry)
        if value, do: no_null_byte!(value, ":env", operation, entry)
        entry

      other ->
        raise ArgumentError, "invalid environment key-value #{inspect(other)} in :env"
    end)
  end

  defp no_null_byte!(binary, what, operation, shown \\ nil) do
    if String.contains?(binary, <<0>>) do
      raise ArgumentError,
            "cannot execute #{operation} for #{what} with null byte, got: #{inspect(shown || binary)}"
    end
  end

  @doc false
  # Turns a `{:error, reason}` of the Erlang API into the exception a
  # System.cmd user expects; `operation` names the function.
  @spec raise_error(reason(), term(), term(), keyword()) :: no_return()
  @spec raise_error(reason(), term(), term(), keyword(), String.t()) :: no_return()
  def raise_error(reason, command, args, opts, operation \\ "Corral.cmd/3")

  def raise_error(reason, command, args, opts, _operation)
      when reason in [:enoent, {:enoent, :exec}] do
    :erlang.error(:enoent, [command, args, opts])
  end

  def raise_error({:bad_option, :env, {_, _} = entry}, _command, _args, _opts, _operation) do
    raise ArgumentError, "invalid environment key-value #{inspect(entry)} in :env"
  end

  def raise_error({:bad_option, name, value}, _command, _args, _opts, _operation) do
    raise ArgumentError, "invalid option #{inspect(name)} with value #{inspect(value)}"
  end

  def raise_error({:unknown_option, name}, _command, _args, _opts, _operation) do
    raise ArgumentError, "unknown option #{inspect(name)}"
  end

  def raise_error(reason, command, _args, _opts, _operation) do
    raise Corral.Error, reason: reason, command: command
  end

  # Binaries and iodata go to the driver as they are; a sink function or
  # any other Enumerable is written from a helper process (corral:cmd/3 calls
  # the fun with the port).
  defp input_option(input) do
    case Corral.Stream.input_option(input) do
      feed when is_function(feed, 1) -> fn port -> feed.(&:corral.write(port, &1)) end
      data -> data
    end
  end

  @doc """
  A lazy stream of `command`'s output; see `Corral.Stream` for the details.

  Elements are chunks of stdout, as the child wrote them. Output is read
  only as you consume it, so memory stays within one `:window` whatever the
  child writes. Halting early (`Enum.take/2`) stops the child's whole
  process group before it returns. A non-zero exit raises `Corral.ExitError`
  (with `status`, `128 + n` for signal `n`) after the last chunk.

  Two forms: `stream!(command, args, opts)`, and the pipe form
  `input |> Corral.stream!(command, args)` (see `stream!/4`). They differ
  by the second argument: a list of arguments, or the command (a binary).

  ## Options

  Those of `cmd/3` that shape the child (`:cd`, `:env`, `:arg0`,
  `:clear_env`, `:stderr_to_stdout`, `:kill_timeout`/`:delay_to_sigkill`,
  `:stop_signal`, `:window`/`:stdio_window`, and the identity and limits:
  `:uid`, `:gid`, `:groups`, `:rlimits`, `:nice`, `:umask`,
  `:no_new_privs`), plus:

    * `:input` — a binary, iodata, any `Enumerable` of iodata (written
      from a helper process, with backpressure), or `fn sink -> ... end`,
      where `sink.(iodata)` returns `:ok`, `{:error, :epipe}` once the child
      closed its stdin, or `{:error, :closed}` once it is gone. stdin is
      closed after the input; without `:input` at once.
    * `:stderr` — absent: read and printed through `:standard_error`;
      `:consume`: elements become `{:stdout, bin}` and `{:stderr, bin}`;
      `:redirect`: merged into stdout; `:discard`: dropped; `:inherit`:
      the VM's own stderr, as `cmd/3` leaves it by default.
    * `:ignore_epipe` — `true` makes a child that stops reading its input
      silent: the sink returns `:ok` and drops the bytes.
    * `:lines` — `true` makes the elements lines instead of chunks, each
      with its trailing `"\\n"` (the last one may lack it), as
      `File.stream!/1` gives them, however the child's writes were cut. A
      line whose text is longer than `:max_line_length` bytes (default
      65536) comes in pieces of exactly that many bytes. Memory stays
      bounded: bytes are acknowledged as lines are consumed.

  Arguments and options are checked as by `cmd/3`, with errors naming
  `Corral.stream!/3` or `Corral.stream/3`.

  An EPIPE never raises: the rest of the input is dropped and the output
  goes on (`stream/3` shows it as `{:error, :epipe}`).

      iex> Corral.stream!("tr", ["a-z", "A-Z"], input: "hello") |> Enum.join()
      "HELLO"

      iex> ["b\\n", "a\\n"] |> Corral.stream!("sort", []) |> Enum.join()
      "a\\nb\\n"

      iex> Corral.stream!("yes", [], lines: true) |> Enum.take(2)
      ["y\\n", "y\\n"]
  """
  @spec stream!(binary() | term(), [binary()] | binary(), [option()] | [binary()]) ::
          Enumerable.t()
  defdelegate stream!(command, args, opts \\ []), to: Corral.Stream

  @doc "The pipe form of `stream!/3`: `input |> Corral.stream!(command, args, opts)`."
  @spec stream!(term(), binary(), [binary()], keyword()) :: Enumerable.t()
  defdelegate stream!(input, command, args, opts), to: Corral.Stream

  @doc """
  Like `stream!/3`, but nothing raises once the stream runs: the last
  element is always `{:exit, status}`, with `status` the exit status,
  `128 + n` for death by signal `n`, or `{:error, reason}` when the child
  could not be started or was lost. `{:error, :epipe}` appears where the
  child closed its stdin while input was pending, unless `ignore_epipe: true`.

      iex> Corral.stream("sh", ["-c", "echo hi; exit 3"]) |> Enum.to_list()
      ["hi\\n", {:exit, 3}]
  """
  @spec stream(binary() | term(), [binary()] | binary(), keyword() | [binary()]) ::
          Enumerable.t()
  defdelegate stream(command, args, opts \\ []), to: Corral.Stream

  @doc "The pipe form of `stream/3`: `input |> Corral.stream(command, args, opts)`."
  @spec stream(term(), binary(), [binary()], keyword()) :: Enumerable.t()
  defdelegate stream(input, command, args, opts), to: Corral.Stream

  @doc """
  What cgroups give this VM's children (see `:corral.cgroup_info/0`):

    * `:v2` - our cgroup v2 group (`:mount`, `:group`, `:controllers`,
      `:writable`), or `:none`
    * `:base` - `:ok` when a spawner here gets a cgroup v2 base and a leaf
      per child; else `{:error, why}`, children are contained by process
      group only, and `why` names the group to delegate
    * `:spawner_base` - the running spawner's base directory, or `:none`
    * `:v1` - the v1 hierarchies with a controller, as for `:v2`
    * `:controllers` - where a child's `:cgroup` option would put each
      controller (`:v2` or `:v1`)
    * `:uid` - the uid the check was made for

  `:writable` is true for root and for a group delegated to this uid (its
  directory and `cgroup.procs` are ours, as systemd's `Delegate=yes` makes
  them).
  """
  @spec cgroup_info() :: :corral.cgroup_info()
  defdelegate cgroup_info(), to: :corral
end

defmodule Corral.Error do
  @moduledoc """
  Raised when a child could not be started or was lost.

  `reason` is the Erlang API's reason: `{errno, stage}` from the child's
  setup, such as `{:enoent, :chdir}` for a missing directory or
  `{:eacces, :exec}` for a file that is not executable, or
  `{:spawner_died, :running}` when the spawner was killed under it. Where
  the spawner says what failed, the stage is `{stage, detail}`:
  `{:enotsup, {:cgroup, "the memory controller is not available: enable
  +memory in /sys/fs/cgroup/cgroup.subtree_control"}}`.
  """
  defexception [:reason, :command]

  @impl true
  def message(%{reason: {:enoent, stage}, command: command})
      when stage in [:uid, :gid, :groups] do
    why =
      case stage do
        :uid -> "no such user (:uid)"
        :gid -> "no such group (:gid), or a :uid without a user and no :gid"
        :groups -> "no such group (:groups)"
      end

    "could not run #{inspect(command)}: #{why}"
  end

  def message(%{reason: {errno, {stage, detail}}, command: command})
      when is_atom(errno) and is_atom(stage) and is_binary(detail) do
    message(%{reason: {errno, stage}, command: command}) <> ": " <> detail
  end

  def message(%{reason: {errno, stage}, command: command})
      when is_atom(errno) and is_atom(stage) do
    case :file.format_error(errno) do
      ~c"unknown POSIX error" ->
        "could not run #{inspect(command)}: #{errno} at #{stage}"

      description ->
        "could not run #{inspect(command)}: #{errno} (#{description}) at #{stage}"
    end
  end

  def message(%{reason: reason, command: command}) do
    "could not run #{inspect(command)}: #{inspect(reason)}"
  end
end
