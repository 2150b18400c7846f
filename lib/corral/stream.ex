defmodule Corral.Stream do
  @moduledoc """
  Lazy, demand-driven streams over a child's output: the implementation of
  `Corral.stream!/3` and `Corral.stream/3`, built on `:corral_stream`.

  The child starts when the stream is enumerated, and again at every
  enumeration. A chunk of output is acknowledged to the driver only when the
  consumer asks for the next element, so at most one credit window
  (`:window`, 1 MiB by default) of output is in memory, however fast the
  child writes; the rest waits in the child's pipe, and the child waits with
  it.

  Halting early (`Enum.take/2`, `Stream.take_while/2`, an exception in the
  consumer) stops the child's whole process group before the enumeration
  returns: the stop signal first, SIGKILL after `:kill_timeout` ms. If the
  consuming process dies instead, its port closes and the spawner does the
  same.

  What can go wrong: a stream that is suspended (`Enumerable.reduce/3` with
  `:suspend`, as `Stream.zip/2` does) and then abandoned leaves its child
  blocked until the consuming process exits.
  """

  @typedoc "An element of `Corral.stream/3`."
  @type element ::
          binary()
          | {:stdout | :stderr, binary()}
          | {:error, atom()}
          | {:exit, non_neg_integer() | {:error, term()}}

  @doc """
  Builds the stream of `Corral.stream!/3`: elements are chunks of stdout
  (or `{:stdout, bin}` / `{:stderr, bin}` with `stderr: :consume`), or lines
  with `lines: true`. It raises `Corral.ExitError` after the last chunk when
  the child exits with a non-zero status.

  Options are validated now; an unknown option or a bad value raises
  `ArgumentError`, and a missing executable raises `ErlangError` with
  `:enoent`, as `System.cmd/3` does.
  """
  @spec stream!(binary(), [binary()], keyword()) :: Enumerable.t()
  @spec stream!(term(), binary(), [binary()]) :: Enumerable.t()
  def stream!(command_or_input, args_or_command, opts_or_args \\ [])

  def stream!(input, command, args) when is_binary(command), do: stream!(input, command, args, [])

  def stream!(command, args, opts) do
    spec = prepare(command, args, opts, "Corral.stream!/3")

    Stream.resource(
      fn -> open(spec, command, args, opts) end,
      fn s -> next_raising(s, command) end,
      &close/1
    )
  end

  @doc """
  Builds the stream of `Corral.stream/3`: like `stream!/3`, but nothing is
  raised once the stream runs. The last element is always
  `{:exit, status}`, where `status` is the exit status, `128 + n` for death
  by signal `n`, or `{:error, reason}` when the child could not be started
  or was lost. `{:error, :epipe}` appears when the child closed its stdin
  while input was still pending (not with `ignore_epipe: true`).
  """
  @spec stream(binary(), [binary()], keyword()) :: Enumerable.t()
  @spec stream(term(), binary(), [binary()]) :: Enumerable.t()
  def stream(command_or_input, args_or_command, opts_or_args \\ [])

  def stream(input, command, args) when is_binary(command), do: stream(input, command, args, [])

  def stream(command, args, opts) do
    spec = prepare(command, args, opts, "Corral.stream/3")

    Stream.resource(
      fn ->
        case :corral_stream.open(spec) do
          {:ok, s} -> s
          {:error, reason} -> {:failed, reason}
        end
      end,
      &next/1,
      &close/1
    )
  end

  @doc """
  The pipe form of `stream!/3`: `input |> Corral.Stream.stream!(command, args, opts)`
  is `stream!(command, args, [input: input] ++ opts)`.
  """
  @spec stream!(term(), binary(), [binary()], keyword()) :: Enumerable.t()
  def stream!(input, command, args, opts) when is_list(opts),
    do: stream!(command, args, Keyword.put(opts, :input, input))

  @doc """
  The pipe form of `stream/3`: `input |> Corral.Stream.stream(command, args, opts)`
  is `stream(command, args, [input: input] ++ opts)`.
  """
  @spec stream(term(), binary(), [binary()], keyword()) :: Enumerable.t()
  def stream(input, command, args, opts) when is_list(opts),
    do: stream(command, args, Keyword.put(opts, :input, input))

  defp prepare(command, args, opts, operation) when is_binary(command) and is_list(args) do
    opts = Corral.validate!(command, args, opts, operation)
    opts = Keyword.update(opts, :input, nil, &input_option/1)

    case :corral_stream.prepare(command, args, opts) do
      {:ok, spec} -> spec
      {:error, reason} -> Corral.raise_error(reason, command, args, opts, operation)
    end
  end

  defp open(spec, command, args, opts) do
    case :corral_stream.open(spec) do
      {:ok, s} -> s
      {:error, reason} -> Corral.raise_error(reason, command, args, opts)
    end
  end

  defp next({:failed, reason} = s), do: {[{:exit, {:error, reason}}], {:done, s}}
  defp next({:done, _} = s), do: {:halt, s}

  defp next(s) do
    case :corral_stream.next(s) do
      {element, s} -> {[element], s}
      :eof -> {:halt, s}
    end
  end

  # The exception is raised on the pull after the exit element, so that the
  # after-fun of Stream.resource/3 sees a finished stream, not a live one.
  defp next_raising({:raise, exception}, _command), do: raise(exception)

  defp next_raising(s, command) do
    case :corral_stream.next(s) do
      {{:error, _errno}, s} ->
        next_raising(s, command)

      {{:exit, 0}, s} ->
        {:halt, s}

      {{:exit, {:error, reason}}, _s} ->
        {[], {:raise, Corral.Error.exception(reason: reason, command: command)}}

      {{:exit, status}, _s} ->
        {[], {:raise, Corral.ExitError.exception(status: status, command: command)}}

      {element, s} ->
        {[element], s}

      :eof ->
        {:halt, s}
    end
  end

  defp close({:failed, _}), do: :ok
  defp close({:done, _}), do: :ok
  defp close({:raise, _}), do: :ok
  defp close(s), do: :corral_stream.close(s)

  # Binaries and iodata go to the driver as they are; a 1-arity function is
  # given the sink; any other Enumerable is written element by element.
  # Corral.cmd/3 shares it.
  @doc false
  def input_option(nil), do: nil
  def input_option(data) when is_binary(data), do: data
  def input_option(fun) when is_function(fun, 1), do: fun

  def input_option(data) when is_list(data) do
    if iodata?(data), do: data, else: enumerable_input(data)
  end

  def input_option(data) do
    if Enumerable.impl_for(data) do
      enumerable_input(data)
    else
      raise ArgumentError, "invalid option :input with value #{inspect(data)}"
    end
  end

  defp enumerable_input(enum) do
    fn sink ->
      Enum.reduce_while(enum, :ok, fn chunk, :ok ->
        case sink.(chunk) do
          :ok -> {:cont, :ok}
          {:error, _} = error -> {:halt, error}
        end
      end)
    end
  end

  defp iodata?(data) do
    _ = IO.iodata_length(data)
    true
  rescue
    ArgumentError -> false
  end
end

defmodule Corral.ExitError do
  @moduledoc """
  Raised by a `Corral.stream!/3` stream when the child exits with a non-zero
  status, after every chunk of its output has been emitted.

  `status` is the exit status, or `128 + n` when the child died of signal
  `n` (as in a shell, and as `Corral.cmd/3` reports it).
  """
  defexception [:status, :command]

  @impl true
  def message(%{status: status, command: command}) do
    "#{inspect(command)} exited with status #{status}"
  end
end
