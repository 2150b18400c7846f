defmodule Corral.IdentityTest do
  # The identity and limit options through every Elixir entry point:
  # Corral.cmd/3, Corral.stream!/3, Corral.Process and Corral.Daemon. What the
  # child is gets read from /proc/<pid>/status and /proc/<pid>/limits while
  # it runs. Changing a child's user needs root: those tests are tagged.
  use ExUnit.Case, async: true
  alias Corral.{Daemon, Process}

  defp status(pid, key) do
    "/proc/#{pid}/status"
    |> File.read!()
    |> String.split("\n")
    |> Enum.find_value(fn line ->
      case String.split(line, ":", parts: 2) do
        [^key, value] -> value |> String.split() |> Enum.join(" ")
        _ -> nil
      end
    end)
  end

  defp limits(pid, row) do
    "/proc/#{pid}/limits"
    |> File.read!()
    |> String.split("\n")
    |> Enum.find_value(fn line ->
      if String.starts_with?(line, row) do
        line |> String.replace_prefix(row, "") |> String.split() |> Enum.take(2)
      end
    end)
  end

  defp id_of(args), do: System.cmd("id", args) |> elem(0) |> String.trim()

  describe "validation" do
    test "bad values raise ArgumentError naming the option and value" do
      for {opt, shown} <- [
            {[uid: -1], ":uid with value -1"},
            {[gid: ""], ":gid with value \"\""},
            {[groups: [4, nil]], ":groups with value nil"},
            {[groups: "adm"], ":groups with value \"adm\""},
            {[rlimits: %{nofile: -1}], ":rlimits with value {:nofile, -1}"},
            {[rlimits: [vmem: 1]], ":rlimits with value {:vmem, 1}"},
            {[rlimits: %{nofile: {10, 5}}], ":rlimits with value {:nofile, {10, 5}}"},
            {[nice: 20], ":nice with value 20"},
            {[umask: 0o1000], ":umask with value 512"},
            {[no_new_privs: :yes], ":no_new_privs with value :yes"}
          ] do
        assert_raise ArgumentError, "invalid option #{shown}", fn ->
          Corral.cmd("true", [], opt)
        end
      end
    end

    test "every entry point takes them" do
      assert {:ok, _} = :corral_opts.normalize("true", [], [uid: 0, rlimits: [core: 0]], :process)
      assert {:ok, _} = :corral_opts.normalize("true", [], [uid: "x", gid: "y"], :daemon)
      assert {:ok, _} = :corral_opts.normalize("true", [], [groups: [], nice: 1], :stream)
    end
  end

  describe "limits, nice, umask, no_new_privs (no privilege needed)" do
    test "cmd/3 applies them" do
      script = "ulimit -Sn; ulimit -Hn; ulimit -c; umask; grep NoNewPrivs /proc/self/status"

      assert {out, 0} =
               Corral.cmd("sh", ["-c", script],
                 rlimits: [nofile: {50, 60}, core: 0],
                 umask: 0o027,
                 no_new_privs: true
               )

      assert out == "50\n60\n0\n0027\nNoNewPrivs:\t1\n"
    end

    test "a stream's child has them" do
      stream = Corral.stream!("sh", ["-c", "ulimit -n; nice"], nice: 3, rlimits: %{nofile: 40})
      assert Enum.join(stream) == "40\n3\n"
    end

    test "without them nothing changes" do
      {out, 0} = Corral.cmd("sh", ["-c", "umask; nice; grep NoNewPrivs /proc/self/status"])

      assert out ==
               "#{String.trim(elem(System.cmd("sh", ["-c", "umask"]), 0))}\n0\nNoNewPrivs:\t0\n"
    end
  end

  describe "identity (root)" do
    @describetag :root

    test "cmd/3 runs as another user with that user's groups, not the VM's" do
      expected =
        Enum.join(
          [id_of(["-u", "nobody"]), id_of(["-g", "nobody"]), id_of(["-G", "nobody"])],
          "\n"
        )

      assert {out, 0} = Corral.cmd("sh", ["-c", "id -u; id -g; id -G"], uid: "nobody")
      assert out == expected <> "\n"
      assert {^out, 0} = Corral.cmd("sh", ["-c", "id -u; id -g; id -G"], uid: 65534)
    end

    test "Corral.Process: uid, gid and groups in /proc/<pid>/status, an rlimit in limits" do
      {:ok, server} =
        Process.start("cat", [],
          uid: "nobody",
          gid: "nogroup",
          groups: ["adm", 4_000_002],
          rlimits: [nofile: {64, 128}]
        )

      {:ok, pid} = Process.os_pid(server)
      assert status(pid, "Uid") == "65534 65534 65534 65534"
      assert status(pid, "Gid") == "65534 65534 65534 65534"
      assert status(pid, "Groups") == "4 4000002"
      assert limits(pid, "Max open files") == ["64", "128"]
      :ok = Process.close_stdin(server)
      assert {:ok, 0} = Process.await_exit(server)
    end

    test "Corral.Daemon takes MuonTrap's uid and gid names" do
      {:ok, daemon} = Daemon.start_link("sleep", ["30"], uid: "nobody", gid: "nogroup")
      pid = Daemon.os_pid(daemon)
      assert status(pid, "Uid") == "65534 65534 65534 65534"
      assert status(pid, "Gid") == "65534 65534 65534 65534"
      assert status(pid, "Groups") == id_of(["-G", "nobody"])
      GenServer.stop(daemon)
    end

    test "a stream's child runs as the user" do
      assert ["65534\n"] = Corral.stream!("id", ["-u"], uid: "nobody") |> Enum.to_list()
    end

    test "unknown names fail the start naming the option" do
      error =
        assert_raise Corral.Error, fn -> Corral.cmd("true", [], uid: "corral-no-such-user") end

      assert error.reason == {:enoent, :uid}
      assert Exception.message(error) == ~s(could not run "true": no such user \(:uid\))
      assert {:error, {:enoent, :gid}} = :corral.open("true", [], gid: "corral-no-such-group")
      assert {:error, {:enoent, :groups}} = :corral.open("true", [], groups: ["corral-no-such"])

      assert Daemon.start_link("true", [], uid: "corral-no-such-user") ==
               {:error, {:enoent, :uid}}

      assert {:error, {:enoent, :uid}} = Process.start("cat", [], uid: "corral-no-such-user")

      # A uid with no user has no primary group to take.
      assert_raise Corral.Error, ~r/a :uid without a user and no :gid/, fn ->
        Corral.cmd("true", [], uid: 4_000_123)
      end

      assert {"4000123 4000124\n", 0} =
               Corral.cmd("sh", ["-c", "echo $(id -u) $(id -g)"], uid: 4_000_123, gid: 4_000_124)
    end

    @tag :tmp_dir
    test "cd is entered as the new user", %{tmp_dir: dir} do
      File.chmod!(dir, 0o700)
      assert {_, 0} = Corral.cmd("true", [], cd: dir)

      error = assert_raise Corral.Error, fn -> Corral.cmd("true", [], cd: dir, uid: "nobody") end
      assert error.reason == {:eacces, :chdir}
    end
  end
end
