defmodule Corral.ContainmentTest do
  # Not async: one test kills this VM's spawner.
  use ExUnit.Case, async: false
  import Corral.Test.OS

  @fixtures Path.expand("fixtures/bin", __DIR__)

  defp fixture(name), do: Path.join(@fixtures, name)

  # Starts the tree fixture (WIDTH children per level, DEPTH levels) in the
  # calling process and returns {port, pids}, once every process reported.
  defp open_tree(width, depth, opts \\ []) do
    {:ok, port} = :corral.open(fixture("tree"), ["#{width}", "#{depth}"], opts)
    count = Enum.sum(for level <- 0..depth, do: Integer.pow(width, level))
    {port, read_pids(port, "pid", count)}
  end

  defp read_pids(port, tag, count, buf \\ "") do
    lines = buf |> String.split("\n") |> Enum.drop(-1)
    pids = for line <- lines, [^tag, pid] <- [String.split(line)], do: String.to_integer(pid)

    if length(pids) >= count do
      pids
    else
      receive do
        {^port, {:data, :stdout, bin}} ->
          :corral.ack(port, byte_size(bin))
          read_pids(port, tag, count, buf <> bin)
      after
        5000 -> flunk("only got #{inspect(buf)}")
      end
    end
  end

  # Runs fun in a new process that opens a tree and reports its pids, then
  # ends the way fun says.
  defp tree_in_owner(ending) do
    parent = self()

    owner =
      spawn(fn ->
        {_port, pids} = open_tree(2, 2)
        send(parent, {:pids, pids})

        receive do
          :go -> ending.()
        end
      end)

    pids = receive do: ({:pids, pids} -> pids)
    assert length(pids) == 7
    assert Enum.all?(pids, &alive?/1)
    send(owner, :go)
    pids
  end

  describe "the owner goes away" do
    test "it returns normally: the whole tree is gone within 1 s" do
      pids = tree_in_owner(fn -> :ok end)
      assert eventually(fn -> not Enum.any?(pids, &alive?/1) end, 1000)
    end

    @tag :capture_log
    test "it raises" do
      pids = tree_in_owner(fn -> raise "owner crashed" end)
      assert eventually(fn -> not Enum.any?(pids, &alive?/1) end, 1000)
    end

    test "it is killed brutally" do
      pids = tree_in_owner(fn -> Process.exit(self(), :kill) end)
      assert eventually(fn -> not Enum.any?(pids, &alive?/1) end, 1000)
    end

    test "a tree that ignores SIGTERM is SIGKILLed after kill_timeout" do
      parent = self()

      owner =
        spawn(fn ->
          {:ok, port} = :corral.open(fixture("ignore_term"), ["3"], kill_timeout: 1500)
          send(parent, {:pids, read_pids(port, "ready", 4)})
          Process.sleep(:infinity)
        end)

      pids = receive do: ({:pids, pids} -> pids)
      Process.exit(owner, :kill)
      # Well inside kill_timeout even when a loaded machine oversleeps.
      Process.sleep(200)
      assert Enum.all?(pids, &alive?/1), "SIGKILLed before kill_timeout"
      assert eventually(fn -> not Enum.any?(pids, &alive?/1) end, 4000)
    end
  end

  describe "descendants that leave the process group" do
    # setsid + double fork: only the child's cgroup leaf still holds them.
    @tag :cgroup_v2
    test "are killed with the tree when the owner goes away" do
      parent = self()

      owner =
        spawn(fn ->
          {:ok, port} = :corral.open(fixture("escape"), [], [])
          send(parent, {:pids, read_pids(port, "escaped", 1)})
          Process.sleep(:infinity)
        end)

      [escaped] = receive do: ({:pids, pids} -> pids)
      assert alive?(escaped)
      Process.exit(owner, :kill)
      assert eventually(fn -> not alive?(escaped) end, 1000)
    end

    @tag :cgroup_v2
    test "are gone when stop/1 returns" do
      {:ok, port} = :corral.open(fixture("escape"), [], [])
      [escaped] = read_pids(port, "escaped", 1)
      assert {:exit_signal, 15} = :corral.stop(port)
      refute alive?(escaped)
    end
  end

  describe "stop" do
    test "returns only after the tree is gone, with a custom stop signal" do
      {port, pids} = open_tree(3, 1, stop_signal: :sigint)
      assert :corral.stop(port) == {:exit_signal, 2}
      refute Enum.any?(pids, &alive?/1)
    end
  end

  describe "the VM is SIGKILLed" do
    test "its children and grandchildren are gone within 1 s" do
      ebin = :code.which(:corral) |> Path.dirname()

      script = """
      {ok, P} = corral:open("#{fixture("tree")}", ["2", "2"], []),
      Loop = fun L() -> receive {P, {data, _, B}} -> io:put_chars(B), corral:ack(P, byte_size(B)), L() end end,
      Loop().
      """

      {:ok, vm} = :corral.open("erl", ["-noshell", "-pa", ebin, "-eval", script], [])
      {:ok, vm_pid} = :corral.os_pid(vm)
      pids = read_pids(vm, "pid", 7)
      assert eventually(fn -> spawner_of(vm_pid) != nil end)
      spawner = spawner_of(vm_pid)
      assert Enum.all?(pids, &alive?/1)

      System.cmd("kill", ["-9", "#{vm_pid}"])
      assert eventually(fn -> not Enum.any?([spawner | pids], &alive?/1) end, 1000)
      assert {:exit_signal, 9} = :corral.await_terminal(vm, 5000)
      # The dead VM's spawner had made its cgroup base inside our child's
      # leaf; both are gone once our spawner reports the exit.
      assert Path.wildcard("/sys/fs/cgroup/**/corral.#{spawner}") == []
    end
  end

  describe "running out of fds" do
    # A VM with a tiny fd limit opens children until opens fail. The
    # failures must be clean errors, and must not take down the children
    # that were already running (nor the spawner).
    test "fails the new opens and leaves the running children alone" do
      ebin = :code.which(:corral) |> Path.dirname()

      script = ~S'''
      Sp = fun() -> string:trim(os:cmd("pgrep -f corral_spawner -P " ++ os:getpid())) end,
      {<<>>, 0} = corral:cmd("true", []),
      Spawner = Sp(),
      Open = fun(_) -> corral:spawn("sleep", ["30"], []) end,
      Results = lists:map(Open, lists:seq(1, 60)),
      Ok = [{P, Pid} || {ok, P, Pid} <- Results],
      Errors = lists:usort([R || {error, R} <- Results]),
      Alive = [Pid || {_, Pid} <- Ok, filelib:is_dir("/proc/" ++ integer_to_list(Pid))],
      Stops = lists:usort([corral:stop(P, 10000) || {P, _} <- Ok]),
      io:format("~p.~n", [#{ok => length(Ok), alive => length(Alive), errors => Errors,
                            stops => Stops, same_spawner => Spawner =:= Sp()}]),
      halt().
      '''

      {out, 0} =
        Corral.cmd("sh", [
          "-c",
          "ulimit -n 96 && exec erl -noshell -pa \"$0\" -eval \"$1\"",
          ebin,
          script
        ])

      {:ok, tokens, _} = out |> String.to_charlist() |> :erl_scan.string()
      {:ok, result} = :erl_parse.parse_term(tokens)

      assert result.ok > 5, inspect(result)
      assert result.errors != [], "the limit was never reached: #{inspect(result)}"
      assert result.alive == result.ok, inspect(result)
      assert result.stops == [{:exit_signal, 15}], inspect(result)
      assert result.same_spawner, inspect(result)

      assert Enum.all?(result.errors, fn {errno, _stage} ->
               errno in [:emfile, :spawner_dropped]
             end),
             inspect(result)
    end
  end

  describe "the spawner is SIGKILLed" do
    test "children die, owners hear of it, the next spawn starts a new spawner" do
      {port, pids} = open_tree(2, 1)
      spawner = spawner_pid()
      assert spawner
      System.cmd("kill", ["-9", "#{spawner}"])

      assert_receive {^port, {:error, {:spawner_died, :running}}}, 2000
      assert eventually(fn -> not Enum.any?(pids, &alive?/1) end, 1000)

      assert {"again\n", 0} = Corral.cmd("echo", ["again"])
      assert spawner_pid() not in [nil, spawner]
    end
  end

  describe "the spawner" do
    test "holds none of the VM's fds: only stdio, its request socket and its own" do
      assert {"", 0} = Corral.cmd("true", [])
      spawner = spawner_pid()

      targets = fn ->
        for fd <- File.ls!("/proc/#{spawner}/fd"),
            String.to_integer(fd) > 2,
            target = File.read_link(fd_path(spawner, fd)),
            match?({:ok, _}, target),
            do: elem(target, 1)
      end

      # Earlier tests' children may still be finishing: their control
      # sockets go when they do. Never a pipe: the VM's are not inherited.
      assert eventually(fn -> Enum.count(targets.(), &String.starts_with?(&1, "socket:")) == 1 end),
             inspect(targets.())

      refute Enum.any?(targets.(), &String.starts_with?(&1, "pipe:")), inspect(targets.())
    end
  end

  defp fd_path(pid, fd), do: "/proc/#{pid}/fd/#{fd}"

  describe "signals" do
    test "a child exiting while signals are sent is no crash and hits no one else" do
      spawner = Corral.cmd("true", []) && spawner_pid()

      for _ <- 1..50 do
        {:ok, port} = :corral.open("sh", ["-c", "exit 0"], [])
        spam(port)
        assert {:exit_status, _} = :corral.await_terminal(port, 5000)
      end

      assert spawner_pid() == spawner
      assert {"ok\n", 0} = Corral.cmd("echo", ["ok"])
    end
  end

  defp spam(port) do
    case :corral.signal(port, :sigcont) do
      :ok -> spam(port)
      {:error, reason} -> assert reason in [:closed, :not_running]
    end
  end

  describe "Corral.Watcher" do
    test "the child is stopped when any watched process exits" do
      {port, pids} = open_tree(2, 1)
      client = spawn(fn -> receive do: (:stop -> :ok) end)
      other = spawn(fn -> Process.sleep(:infinity) end)
      {:ok, watcher} = Corral.Watcher.start(port, [client, other])
      assert Enum.sort(Corral.Watcher.watched(watcher)) == Enum.sort([client, other])
      ref = Process.monitor(watcher)

      send(client, :stop)
      assert_receive {:DOWN, ^ref, :process, ^watcher, :normal}, 1000
      assert eventually(fn -> not Enum.any?(pids, &alive?/1) end, 1000)
      Process.exit(other, :kill)
    end

    test "unwatch, and the watcher ends with the port" do
      {:ok, port} = :corral.open("sleep", ["30"], [])
      {:ok, os_pid} = :corral.os_pid(port)
      client = spawn(fn -> Process.sleep(:infinity) end)
      {:ok, watcher} = Corral.Watcher.start(port, [client])
      :ok = Corral.Watcher.unwatch(watcher, client)
      Process.exit(client, :kill)
      Process.sleep(100)
      assert alive?(os_pid)

      ref = Process.monitor(watcher)
      assert {:exit_signal, 15} = :corral.stop(port)
      assert_receive {:DOWN, ^ref, :process, ^watcher, :normal}, 1000
    end

    test "watching a pid that is already dead stops the child" do
      {:ok, port} = :corral.open("sleep", ["30"], [])
      {:ok, os_pid} = :corral.os_pid(port)
      dead = spawn(fn -> :ok end)
      Process.sleep(10)
      {:ok, watcher} = Corral.Watcher.start(port, [])
      :ok = Corral.Watcher.watch(watcher, dead)
      assert eventually(fn -> not alive?(os_pid) end, 1000)
    end

    test "a closed port is refused" do
      {:ok, port} = :corral.open("true", [], [])
      assert {:exit_status, 0} = :corral.await_terminal(port, 5000)
      assert {:error, {:bad_port, ^port}} = Corral.Watcher.start(port, [self()])
    end
  end

  defp spawner_of(vm_pid) do
    Enum.find(children_of(vm_pid), fn pid ->
      case File.read("/proc/#{pid}/cmdline") do
        {:ok, cmd} -> String.contains?(cmd, "corral_spawner")
        _ -> false
      end
    end)
  end
end
