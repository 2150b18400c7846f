defmodule Corral.Supervised do
  @moduledoc false
  # What Corral.Process and Corral.Daemon share as supervised children: the
  # forms of their start argument, their child spec, and a stop that fits in
  # the supervisor's :shutdown.

  @doc """
  Splits a start argument: `[command, args]`, `[command, args, opts]`, or a
  keyword list with `:command`, `:args` (default `[]`) and the options.
  """
  @spec split_arg(term()) :: {:ok, term(), term(), keyword()} | {:error, term()}
  def split_arg([command, args]) when not is_tuple(command), do: {:ok, command, args, []}

  def split_arg([command, args, opts]) when not is_tuple(command) and is_list(opts),
    do: {:ok, command, args, opts}

  def split_arg([{_, _} | _] = kw) do
    case Keyword.pop(kw, :command) do
      {nil, _} ->
        {:error, {:missing_option, :command}}

      {command, kw} ->
        {args, opts} = Keyword.pop(kw, :args, [])
        {:ok, command, args, opts}
    end
  end

  def split_arg(other), do: {:error, {:bad_arg, other}}

  @doc """
  `module.start_link(command, args, opts)` for `arg` in any of
  `split_arg/1`'s forms, as a supervisor calls `start_link/1`.
  """
  @spec start_link(module(), term()) :: GenServer.on_start()
  def start_link(module, arg) do
    case split_arg(arg) do
      {:ok, command, args, opts} -> module.start_link(command, args, opts)
      {:error, _} = error -> error
    end
  end

  @doc """
  The child spec of `module` for `arg`: `:id` (default `module`), `:restart`
  (default `:permanent`) and `:shutdown` (default 5000) are taken from the
  options; `:shutdown` is passed on to the start options too, after
  `defaults` (options added unless given).
  """
  @spec child_spec(module(), term(), keyword()) :: Supervisor.child_spec()
  def child_spec(module, arg, defaults) do
    case split_arg(arg) do
      {:ok, command, args, opts} ->
        {id, opts} = Keyword.pop(opts, :id, module)
        {restart, opts} = Keyword.pop(opts, :restart, :permanent)
        {shutdown, opts} = Keyword.pop(opts, :shutdown, 5000)

        {added, opts} =
          Enum.map_reduce(defaults, opts, fn {key, default}, opts ->
            {value, opts} = Keyword.pop(opts, key, default)
            {{key, value}, opts}
          end)

        %{
          id: id,
          start: {module, :start_link, [[command, args, opts ++ added ++ [shutdown: shutdown]]]},
          restart: restart,
          shutdown: shutdown,
          type: :worker
        }

      {:error, reason} ->
        raise ArgumentError, "bad #{inspect(module)} child spec argument: #{inspect(reason)}"
    end
  end

  @doc "True for a valid `:shutdown`: ms, `:infinity` or `:brutal_kill`."
  @spec valid_shutdown?(term()) :: boolean()
  def valid_shutdown?(s), do: s in [:infinity, :brutal_kill] or (is_integer(s) and s >= 0)

  @doc """
  Lowers the normalized `kill_timeout` so that SIGKILL comes early enough
  for the tree to be gone before the supervisor's shutdown time runs out
  (see `:corral_daemon.fit_shutdown/2`).
  """
  @spec fit_shutdown(map(), :infinity | :brutal_kill | non_neg_integer()) :: map()
  defdelegate fit_shutdown(n, shutdown), to: :corral_daemon
end
