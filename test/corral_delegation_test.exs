defmodule CorralDelegationTest do
  # A VM that is not root gets per-child cgroup leaves from a delegated
  # cgroup v2 subtree, and without one runs its children contained by process
  # group only and says why. The test VM (root) makes a group beneath its own
  # v2 group, delegates it to nobody the way systemd's Delegate=yes does
  # (chowns the directory and its cgroup.procs, cgroup.threads and
  # cgroup.subtree_control), and starts a second VM as nobody inside it. That
  # VM runs the probe below and prints what it saw as one Erlang term.
  use ExUnit.Case, async: false

  import Corral.Test.OS, only: [alive?: 1, eventually: 2]

  @moduletag :root
  @moduletag :cgroup_v2

  @nobody 65534

  # Runs in the nobody VM: `contained` runs children and reports, `kill`
  # reports its children and waits to be SIGKILLed. Facts only; the test
  # judges them.
  @probe ~S'''
  -module(delegation_probe).
  -export([run/1]).

  run([Mode]) ->
      Facts =
          try
              probe(list_to_atom(Mode))
          catch
              C:R:St -> {crash, C, R, St}
          end,
      io:format("RESULT ~w.~n", [Facts]),
      case Mode of
          "kill" -> receive after infinity -> ok end;
          _ -> halt(0)
      end.

  probe(contained) ->
      Info = corral:cgroup_info(),
      {ok, P1, Pid1} = corral:spawn("sleep", ["60"], []),
      {ok, P2, Pid2} = corral:spawn("sleep", ["60"], []),
      {ok, P3, Pid3} = corral:spawn("sh", ["-c", "setsid sleep 60 </dev/null >/dev/null 2>&1 & echo $!; wait"], []),
      Grand = read_pid(P3, <<>>),
      Spawner = parent(Pid1),
      Cgroups = #{c1 => cgroup(Pid1), c2 => cgroup(Pid2), tree => cgroup(Pid3),
                  grandchild => cgroup(Grand)},
      Sids = #{tree => sid(Pid3), grandchild => sid(Grand)},
      Running = corral:cgroup_info(),
      StopTree = corral:stop(P3),
      GrandAlive = alive(Grand),
      Stops = [corral:stop(P) || P <- [P1, P2]],
      Mem = corral:cmd("true", [], [{cgroup, #{memory_max => 67108864}}]),
      #{info => Info, spawner => Spawner, spawner_base => maps:get(spawner_base, Running),
        cgroups => Cgroups, sids => Sids, stop_tree => StopTree,
        grandchild_alive => GrandAlive, stops => Stops, memory_max => Mem,
        vm_cgroup => cgroup(list_to_integer(os:getpid())), spawner_cgroup => cgroup(Spawner)};
  probe(kill) ->
      {ok, _, Pid1} = corral:spawn("sleep", ["60"], []),
      {ok, P2, Pid2} = corral:spawn("sh", ["-c", "setsid sleep 60 </dev/null >/dev/null 2>&1 & echo $!; wait"], []),
      Grand = read_pid(P2, <<>>),
      #{pids => [Pid1, Pid2, Grand], spawner => parent(Pid1),
        cgroups => [cgroup(P) || P <- [Pid1, Pid2, Grand]]}.

  read_pid(P, Acc) ->
      receive
          {P, {data, stdout, B}} ->
              corral:ack(P, byte_size(B)),
              All = <<Acc/binary, B/binary>>,
              case binary:split(All, <<"\n">>) of
                  [Line, _] -> binary_to_integer(Line);
                  [_] -> read_pid(P, All)
              end
      after 10000 -> error(no_pid)
      end.

  %% The v2 line of /proc/<pid>/cgroup: the path from the hierarchy's root.
  cgroup(Pid) ->
      {ok, Text} = file:read_file("/proc/" ++ integer_to_list(Pid) ++ "/cgroup"),
      [Path] = [P || <<"0::", P/binary>> <- binary:split(Text, <<"\n">>, [global])],
      Path.

  stat(Pid) ->
      {ok, Stat} = file:read_file("/proc/" ++ integer_to_list(Pid) ++ "/stat"),
      [_, Rest] = string:split(Stat, <<")">>, trailing),
      string:lexemes(Rest, " ").

  parent(Pid) -> binary_to_integer(lists:nth(2, stat(Pid))).
  sid(Pid) -> binary_to_integer(lists:nth(4, stat(Pid))).

  alive(Pid) ->
      case file:read_file("/proc/" ++ integer_to_list(Pid) ++ "/stat") of
          {ok, _} -> hd(stat(Pid)) =/= <<"Z">>;
          {error, _} -> false
      end.
  '''

  setup_all do
    info = Corral.cgroup_info()
    %{mount: mount, group: own} = info.v2
    tmp = copy_build(@probe)
    on_exit(fn -> File.rm_rf!(tmp) end)
    {:ok, mount: mount, own: own, tmp: tmp}
  end

  setup %{own: own} do
    dir = Path.join(own, "delegation-test.#{:os.getpid()}.#{System.unique_integer([:positive])}")
    File.mkdir!(dir)
    on_exit(fn -> remove_group(dir) end)
    {:ok, dir: dir}
  end

  describe "a VM as nobody in a delegated v2 group" do
    test "puts each child in a leaf below its base, kills a setsid tree whole and leaves nothing",
         %{dir: dir, mount: mount, tmp: tmp} do
      delegate(dir, @nobody)
      {result, out} = run_vm(dir, tmp, "contained")
      rel = String.replace_prefix(dir, mount, "")

      assert result.info.uid == @nobody
      assert result.info.base == :ok, inspect(result.info)
      assert result.info.v2.group == dir
      assert result.info.v2.writable

      # Each child in its own leaf c<N> under <dir>/corral.<spawner pid>.
      base = Regex.escape("#{rel}/corral.#{result.spawner}")
      assert result.spawner_base == dir <> "/corral.#{result.spawner}"
      leaves = Map.take(result.cgroups, [:c1, :c2, :tree])

      assert Enum.all?(Map.values(leaves), &String.match?(&1, ~r"^#{base}/c\d+$")),
             inspect(leaves)

      assert leaves |> Map.values() |> Enum.uniq() |> length() == 3

      # The grandchild left the process group but not the leaf; stop/1 got it.
      assert result.sids.grandchild != result.sids.tree
      assert result.cgroups.grandchild == result.cgroups.tree
      assert result.stop_tree == {:exit_signal, 15}
      refute result.grandchild_alive
      assert result.stops == [{:exit_signal, 15}, {:exit_signal, 15}]

      # Corral moved neither the VM nor its spawner out of the delegated group.
      assert result.vm_cgroup == rel
      assert result.spawner_cgroup == rel
      assert File.read!(Path.join(dir, "cgroup.subtree_control")) == ""

      # memory is on a root-owned v1 hierarchy here: refused, naming the fix.
      assert {:error, {:eacces, {:cgroup, detail}}} = result.memory_max
      assert detail =~ "to uid #{@nobody} (systemd Delegate=yes) or run as root", detail

      assert eventually(
               fn -> File.ls!(dir) |> Enum.filter(&File.dir?(Path.join(dir, &1))) == [] end,
               5000
             ),
             "left under #{dir}: #{inspect(File.ls!(dir))}"

      refute out =~ "no cgroup containment"
    end

    test "leaves nothing under the group when the VM is SIGKILLed", %{
      dir: dir,
      mount: mount,
      tmp: tmp
    } do
      delegate(dir, @nobody)
      port = open_vm(dir, tmp, "kill")
      {:ok, vm} = :corral.os_pid(port)
      {result, _} = read_result(port, "")
      rel = String.replace_prefix(dir, mount, "")

      assert Enum.all?(
               result.cgroups,
               &String.starts_with?(&1, "#{rel}/corral.#{result.spawner}/c")
             ),
             inspect(result)

      assert Enum.all?(result.pids, &alive?/1)

      System.cmd("kill", ["-9", "#{vm}"])
      assert {:exit_signal, 9} = :corral.await_terminal(port, 10000)
      assert eventually(fn -> not Enum.any?([result.spawner | result.pids], &alive?/1) end, 5000)
      assert eventually(fn -> subgroups(dir) == [] end, 5000), inspect(subgroups(dir))
    end
  end

  describe "a VM as nobody in a group it may not write" do
    test "runs children without leaves, says why once, and refuses cgroup options naming the fix",
         %{dir: dir, mount: mount, tmp: tmp} do
      {result, out} = run_vm(dir, tmp, "contained")
      rel = String.replace_prefix(dir, mount, "")

      assert result.info.uid == @nobody
      refute result.info.v2.writable
      assert {:error, why} = result.info.base
      assert why =~ "cannot create #{dir}/corral."
      assert why =~ "delegate #{dir} to uid #{@nobody} (systemd Delegate=yes) or run as root"
      assert result.spawner_base == :none

      # Children run, in the VM's own group; the tree is still stopped (by
      # process group: the setsid grandchild is out of reach, so it is
      # killed here by the cleanup).
      assert Enum.all?(Map.take(result.cgroups, [:c1, :c2, :tree]), fn {_, cg} -> cg == rel end)
      assert result.stops == [{:exit_signal, 15}, {:exit_signal, 15}]
      assert result.grandchild_alive

      assert {:error, {:eacces, {:cgroup, detail}}} = result.memory_max
      assert detail =~ "to uid #{@nobody} (systemd Delegate=yes) or run as root", detail
      memory = Enum.find(result.info.v1, &(:memory in &1.controllers))
      assert detail =~ "delegate #{memory.group} to uid", detail

      # One log line, from the spawner at its start.
      assert length(String.split(out, "no cgroup containment")) == 2, out
      assert subgroups(dir) == []
    end
  end

  # chown as systemd's Delegate=yes does: the group and the files that let
  # its owner make groups, move processes and enable controllers below it.
  defp delegate(dir, uid) do
    for f <- ["", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"] do
      File.chown!(Path.join(dir, f), uid)
      File.chgrp!(Path.join(dir, f), uid)
    end
  end

  defp run_vm(dir, tmp, mode) do
    port = open_vm(dir, tmp, mode)
    {result, out} = read_result(port, "")
    {out, _status} = drain(port, out)
    {result, out}
  end

  # sh moves itself into dir as root, then becomes a VM as nobody there.
  defp open_vm(dir, tmp, mode) do
    script = """
    echo $$ > "$0/cgroup.procs" && cd "$1" && exec env -i PATH="$PATH" HOME="$1" \
      setpriv --reuid=#{@nobody} --regid=#{@nobody} --clear-groups \
      erl -noshell -pa "$1/corral/ebin" -pa "$1/probe" -run delegation_probe run "$2" 2>&1
    """

    {:ok, port} = :corral.open("sh", ["-c", script, dir, tmp, mode], [])
    port
  end

  defp read_result(port, acc) do
    case Regex.run(~r/^RESULT (.*)\n/m, acc) do
      [_, term] ->
        {:ok, tokens, _} = :erl_scan.string(String.to_charlist(term))
        {:ok, result} = :erl_parse.parse_term(tokens)

        refute match?({:crash, _, _, _}, result),
               "the nobody VM crashed: #{inspect(result)}\n#{acc}"

        {result, acc}

      nil ->
        receive do
          {^port, {:data, _, bin}} ->
            :corral.ack(port, byte_size(bin))
            read_result(port, acc <> bin)

          {^port, terminal} ->
            flunk("the nobody VM ended (#{inspect(terminal)}) before its result:\n#{acc}")
        after
          30_000 -> flunk("no result from the nobody VM:\n#{acc}")
        end
    end
  end

  defp drain(port, acc) do
    receive do
      {^port, {:data, _, bin}} ->
        :corral.ack(port, byte_size(bin))
        drain(port, acc <> bin)

      {^port, terminal} ->
        {acc, terminal}
    after
      30_000 -> flunk("the nobody VM did not exit:\n#{acc}")
    end
  end

  defp subgroups(dir) do
    case File.ls(dir) do
      {:ok, names} -> Enum.filter(names, &File.dir?(Path.join(dir, &1)))
      {:error, _} -> []
    end
  end

  # Kills whatever is left in dir (the setsid grandchild of the undelegated
  # case), waits for it to empty and removes it with its subgroups.
  defp remove_group(dir) do
    if File.dir?(dir) do
      _ = File.write(Path.join(dir, "cgroup.kill"), "1")

      eventually(
        fn -> File.read!(Path.join(dir, "cgroup.events")) =~ "populated 0" end,
        5000
      )

      remove_tree(dir)
    end
  end

  defp remove_tree(dir) do
    Enum.each(subgroups(dir), &remove_tree(Path.join(dir, &1)))
    File.rmdir(dir)
  end

  # The nobody VM's code: Corral's ebin and priv, and the probe, copied into
  # a fresh directory under /tmp that nobody can read (the checkout may lie
  # under a directory only root can enter).
  defp copy_build(probe) do
    tmp = Path.join("/tmp", "corral-delegation-#{System.unique_integer([:positive])}")
    ebin = :code.which(:corral) |> Path.dirname()
    priv = :code.priv_dir(:corral) |> to_string()

    for d <- ["corral/ebin", "corral/priv", "probe"], do: File.mkdir_p!(Path.join(tmp, d))

    for f <- File.ls!(ebin),
        Path.extname(f) in [".beam", ".app"],
        do: File.cp!(Path.join(ebin, f), Path.join([tmp, "corral/ebin", f]))

    for f <- ["corral_drv.so", "corral_spawner"],
        do: File.cp!(Path.join(priv, f), Path.join([tmp, "corral/priv", f]))

    src = Path.join([tmp, "probe", "delegation_probe.erl"])
    File.write!(src, probe)

    {:ok, _} =
      :compile.file(to_charlist(src), [:report, outdir: to_charlist(Path.join(tmp, "probe"))])

    {_, 0} = System.cmd("chmod", ["-R", "a+rX", tmp])
    File.chmod!(Path.join([tmp, "corral/priv", "corral_spawner"]), 0o755)
    tmp
  end
end

defmodule CorralCgroupInfoTest do
  # Corral.cgroup_info/0 as any user sees it: our own groups, and the running
  # spawner's base exactly when a spawner here gets one.
  use ExUnit.Case, async: false

  test "describes this VM's groups and, with a base, the running spawner's" do
    info = Corral.cgroup_info()
    {uid, 0} = System.cmd("id", ["-u"])
    assert info.uid == String.to_integer(String.trim(uid))

    own =
      File.read!("/proc/self/cgroup")
      |> String.split("\n")
      |> Enum.find_value(fn line -> with "0::" <> path <- line, do: path, else: (_ -> nil) end)

    case info.v2 do
      :none ->
        assert {:error, _} = info.base

      %{mount: mount, group: group, controllers: controllers} ->
        assert group == String.trim_trailing(mount <> own, "/")

        assert controllers ==
                 File.read!(Path.join(group, "cgroup.controllers"))
                 |> String.split()
                 |> Enum.map(&String.to_atom/1)

        assert Enum.all?(controllers, &(info.controllers[&1] == :v2))
    end

    for %{controllers: cs} <- info.v1, c <- cs, do: assert(info.controllers[c] in [:v1, :v2])

    {:ok, port, pid} = :corral.spawn("sleep", ["30"], [])
    base = Corral.cgroup_info().spawner_base

    if info.base == :ok do
      assert File.dir?(base)
      [_, path] = Regex.run(~r/^0::(.*)$/m, File.read!("/proc/#{pid}/cgroup"))
      assert String.starts_with?(info.v2.mount <> path, base <> "/"), "#{path} not under #{base}"
    else
      assert base == :none
    end

    assert {:exit_signal, 15} = :corral.stop(port)
  end
end
