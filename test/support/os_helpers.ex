defmodule Corral.Test.OS do
  @moduledoc false
  # Real OS state for assertions: live pids, process groups, fds, zombies.

  @doc "True while `pid` exists and is not a zombie."
  def alive?(pid) do
    case File.read("/proc/#{pid}/stat") do
      {:ok, stat} -> state(stat) != "Z"
      {:error, _} -> false
    end
  end

  @doc "Pids whose command line contains `marker`."
  def pids_matching(marker) do
    for dir <- File.ls!("/proc"),
        Integer.parse(dir) != :error,
        {pid, ""} = Integer.parse(dir),
        cmdline = read_cmdline(pid),
        cmdline != nil and String.contains?(cmdline, marker),
        alive?(pid),
        do: pid
  end

  @doc "Waits up to `ms` for `fun` to return true; returns its last value."
  def eventually(fun, ms \\ 2000) do
    deadline = System.monotonic_time(:millisecond) + ms
    do_eventually(fun, deadline)
  end

  defp do_eventually(fun, deadline) do
    cond do
      fun.() -> true
      System.monotonic_time(:millisecond) > deadline -> false
      true -> Process.sleep(10) && do_eventually(fun, deadline)
    end
  end

  @doc "Number of open fds of this VM."
  def vm_fd_count, do: length(File.ls!("/proc/self/fd"))

  @doc "Number of open fds of process `pid`."
  def fd_count(pid), do: length(File.ls!("/proc/#{pid}/fd"))

  @doc "Resident set size of process `pid` (or \"self\"), in KiB."
  def rss_kb(pid) do
    "/proc/#{pid}/status"
    |> File.read!()
    |> String.split("\n")
    |> Enum.find_value(fn
      "VmRSS:" <> rest -> rest |> String.trim() |> String.split() |> hd() |> String.to_integer()
      _ -> nil
    end)
  end

  @doc "Zombie children of this VM and of the spawner."
  def zombies do
    for dir <- File.ls!("/proc"),
        match?({_, ""}, Integer.parse(dir)),
        {:ok, stat} <- [File.read("/proc/#{dir}/stat")],
        state(stat) == "Z",
        ppid(stat) in parents(),
        do: String.to_integer(dir)
  end

  @doc "OS pid of this VM's spawner, or nil."
  def spawner_pid do
    vm = List.to_integer(:os.getpid())

    Enum.find(children_of(vm), fn pid ->
      cmd = read_cmdline(pid) || ""
      String.contains?(cmd, "corral_spawner")
    end)
  end

  def children_of(pid) do
    for dir <- File.ls!("/proc"),
        match?({_, ""}, Integer.parse(dir)),
        {:ok, stat} <- [File.read("/proc/#{dir}/stat")],
        ppid(stat) == pid,
        do: String.to_integer(dir)
  end

  defp parents do
    vm = List.to_integer(:os.getpid())
    Enum.reject([vm, spawner_pid()], &is_nil/1)
  end

  defp read_cmdline(pid) do
    case File.read("/proc/#{pid}/cmdline") do
      {:ok, s} -> String.replace(s, <<0>>, " ")
      _ -> nil
    end
  end

  # /proc/PID/stat: "pid (comm) S ppid ..."; comm may hold spaces or parens.
  defp after_comm(stat), do: stat |> String.split(") ") |> List.last() |> String.split(" ")
  defp state(stat), do: stat |> after_comm() |> hd()
  defp ppid(stat), do: stat |> after_comm() |> Enum.at(1) |> String.to_integer()
end
