defmodule Corral.ProcessTest do
  use ExUnit.Case, async: false
  import Corral.Test.OS
  alias Corral.Process, as: Proc

  test "write, close_stdin, read to EOF, await_exit, stats" do
    {:ok, p} = Proc.start("cat", [])
    assert Proc.alive?(p)
    :ok = Proc.write(p, "hello ")
    :ok = Proc.write(p, "world")
    :ok = Proc.close_stdin(p)
    assert read_all(p) == "hello world"
    assert Proc.read(p) == :eof
    assert {:ok, 0} = Proc.await_exit(p)
    refute Proc.alive?(p)
    assert Proc.write(p, "late") == {:error, :closed}

    stats = Proc.stats(p)
    assert %{bytes_in: 11, bytes_out: 11, bytes_err: 0, write_count: 2, exit_status: 0} = stats
    assert stats.read_count >= 1 and is_integer(stats.duration_ms)
  end

  test "close_stdin makes cat exit, and its output stays readable until EOF" do
    {:ok, p} = Proc.start("cat", [])
    {:ok, os_pid} = Proc.os_pid(p)
    data = :binary.copy("0123456789abcdef", 4096)
    :ok = Proc.write(p, data)
    assert Proc.write(p, "!") == :ok
    :ok = Proc.close_stdin(p)
    assert Proc.write(p, "more") == {:error, :stdin_closed}
    # cat has all its input and fits its output in the window and the pipe.
    assert eventually(fn -> not alive?(os_pid) end)
    assert read_all(p) == data <> "!"
    assert Proc.read(p) == :eof
    assert {:ok, 0} = Proc.await_exit(p)
  end

  test "a slow reader holds the child back: at most one window is buffered" do
    {:ok, p} = Proc.start("yes", [], window: 65536)
    Process.sleep(300)
    %{bytes_out: out} = Proc.stats(p)
    # Without acks on read, yes would have produced hundreds of MiB by now.
    assert out <= 65536
    {:ok, chunk} = Proc.read(p)
    Process.sleep(100)
    assert Proc.stats(p).bytes_out <= 65536 + byte_size(chunk)
    :ok = Proc.kill(p, :sigkill)
    # The exit comes after the output: read what is left in the pipe.
    assert is_binary(read_all(p))
    assert {:ok, 137} = Proc.await_exit(p)
  end

  test "read times out, await_exit times out and then works from any process" do
    {:ok, p} = Proc.start("sh", ["-c", "sleep 0.3; exit 7"])
    assert Proc.read(p, 50) == {:error, :timeout}
    assert Proc.await_exit(p, 0) == {:error, :timeout}
    waiters = for _ <- 1..3, do: Task.async(fn -> Proc.await_exit(p, 5000) end)
    assert Enum.map(waiters, &Task.await/1) == [{:ok, 7}, {:ok, 7}, {:ok, 7}]
    assert Proc.await_exit(p) == {:ok, 7}
    assert Proc.read(p) == :eof
  end

  test "stderr: consume, read_stderr and read_any" do
    {:ok, p} = Proc.start("sh", ["-c", "echo out; echo err >&2"], stderr: :consume)
    assert {:ok, 0} = Proc.await_exit(p)
    assert Proc.read_stderr(p) == {:ok, "err\n"}
    assert Proc.read_stderr(p) == :eof
    assert Proc.read_any(p) == {:ok, {:stdout, "out\n"}}
    assert Proc.read_any(p) == :eof

    {:ok, p} = Proc.start("sh", ["-c", "echo err >&2"], stderr: :discard)
    assert Proc.read_stderr(p) == {:error, :not_consumed}
    assert Proc.read(p) == :eof
  end

  test "concurrent writers keep their order per writer" do
    {:ok, p} = Proc.start("cat", [])
    parent = self()
    reader = Task.async(fn -> read_all(p) end)

    writers =
      for w <- 1..8 do
        Task.async(fn ->
          for i <- 1..2000, do: :ok = Proc.write(p, :io_lib.format("~2..0B ~6..0B~n", [w, i]))
          send(parent, {:done, w})
        end)
      end

    Enum.each(writers, &Task.await(&1, 30_000))
    :ok = Proc.close_stdin(p)
    lines = Task.await(reader, 30_000) |> String.split("\n", trim: true)
    assert length(lines) == 16_000

    by_writer = Enum.group_by(lines, &binary_part(&1, 0, 2), &binary_part(&1, 3, 6))

    for w <- 1..8 do
      seqs = Map.fetch!(by_writer, String.pad_leading("#{w}", 2, "0"))
      assert seqs == Enum.map(1..2000, &String.pad_leading("#{&1}", 6, "0"))
    end
  end

  test "write returns {:error, :epipe} once the child closed its stdin" do
    {:ok, p} = Proc.start("head", ["-c", "1"])
    big = :binary.copy("x", 1_000_000)

    result =
      Enum.reduce_while(1..100, :ok, fn _, _ ->
        case Proc.write(p, big) do
          :ok -> {:cont, :ok}
          error -> {:halt, error}
        end
      end)

    assert result in [{:error, :epipe}, {:error, :closed}]
    assert {:ok, 0} = Proc.await_exit(p)
  end

  describe "signals reach the whole process group" do
    for sig <- [:sigterm, :sigint, :sighup, :sigusr1, :sigusr2, :sigquit, :sigpipe] do
      test "#{sig}" do
        name = unquote(sig) |> Atom.to_string() |> String.trim_leading("sig") |> String.upcase()
        # The child shell runs in the foreground, so it is in the same group
        # and, unlike an asynchronous list, does not start with INT and QUIT
        # ignored.
        child =
          "trap 'echo child-got-#{name}; exit 0' #{name}; echo ready; while :; do sleep 0.05; done"

        script = "trap 'echo parent-got-#{name}' #{name}; sh -c \"#{child}\"; exit 0"
        {:ok, p} = Proc.start("sh", ["-c", script], stderr: :discard)
        assert {:ok, "ready\n"} = Proc.read(p)
        :ok = Proc.signal(p, unquote(sig))
        out = read_all(p)
        assert out =~ "child-got-#{name}"
        assert out =~ "parent-got-#{name}"
        assert {:ok, 0} = Proc.await_exit(p)
      end
    end

    test "sigkill" do
      {:ok, p} = Proc.start("sh", ["-c", "sleep 100 & sleep 100 & echo ready; wait"])
      assert {:ok, "ready\n"} = Proc.read(p)
      {:ok, os_pid} = Proc.os_pid(p)
      group = [os_pid | children_of(os_pid)]
      assert length(group) == 3
      :ok = Proc.kill(p, :sigkill)
      assert {:ok, 137} = Proc.await_exit(p)
      assert eventually(fn -> Enum.all?(group, &(not alive?(&1))) end)
      assert Proc.kill(p, :sigkill) == {:error, :not_running}
    end

    test "sigstop and sigcont" do
      {:ok, p} = Proc.start("sh", ["-c", "sh -c 'echo ready; while :; do sleep 0.05; done'"])
      assert {:ok, "ready\n"} = Proc.read(p)
      {:ok, os_pid} = Proc.os_pid(p)
      [child] = children_of(os_pid)
      :ok = Proc.signal(p, :sigstop)
      # The spawner sends the signal; on a loaded machine that took over the
      # 2 s default once.
      assert eventually(fn -> state(os_pid) == "T" and state(child) == "T" end, 10_000)
      assert Proc.alive?(p)
      # The short name, as :corral.signal/2 takes it.
      :ok = Proc.signal(p, :cont)
      assert eventually(fn -> state(os_pid) != "T" and state(child) != "T" end, 10_000)
      :ok = Proc.kill(p, :sigkill)
      assert {:ok, 137} = Proc.await_exit(p)
    end

    test "a bad signal is an error" do
      {:ok, p} = Proc.start("cat", [])
      assert Proc.signal(p, :sigbogus) == {:error, {:bad_signal, :sigbogus}}
      assert Proc.signal(p, 65) == {:error, {:bad_signal, 65}}
      assert Proc.kill(p, :sigbogus) == {:error, {:bad_signal, :sigbogus}}
      :ok = Proc.close_stdin(p)
      assert {:ok, 0} = Proc.await_exit(p)
    end
  end

  describe "owner" do
    test "the owner's death stops the child" do
      owner = spawn(fn -> Process.sleep(:infinity) end)
      {:ok, p} = Proc.start("sleep", ["100"], owner: owner)
      {:ok, os_pid} = Proc.os_pid(p)
      ref = Process.monitor(p)
      Process.exit(owner, :kill)
      assert_receive {:DOWN, ^ref, :process, ^p, _}
      assert eventually(fn -> not alive?(os_pid) end)
    end

    test "set_owner hands the child over" do
      parent = self()

      first =
        spawn(fn ->
          {:ok, p} = Proc.start("sleep", ["100"])
          send(parent, {:started, p})

          receive do
            {:give, to} -> send(parent, {:gave, Proc.set_owner(p, to)})
          end
        end)

      assert_receive {:started, p}
      {:ok, os_pid} = Proc.os_pid(p)
      assert Proc.set_owner(p, self()) == {:error, :not_owner}
      second = spawn(fn -> Process.sleep(:infinity) end)
      send(first, {:give, second})
      assert_receive {:gave, :ok}
      # The first owner is gone now; the child runs on.
      Process.sleep(100)
      assert alive?(os_pid) and Proc.alive?(p)
      Process.exit(second, :kill)
      assert eventually(fn -> not alive?(os_pid) end)
    end

    test "stop/1 returns only after the whole tree is gone" do
      tree = Path.expand("fixtures/bin/tree", __DIR__)
      {:ok, p} = Proc.start_link(tree, ["2", "2"])
      pids = read_tree_pids(p, 7, "")
      assert Enum.all?(pids, &alive?/1)
      :ok = Proc.stop(p)
      # No waiting here: stop/1 has already waited.
      refute Enum.any?(pids, &alive?/1)
    end

    test "stop/1 of a child that ignores SIGTERM waits for the SIGKILL" do
      ignore = Path.expand("fixtures/bin/ignore_term", __DIR__)
      {:ok, p} = Proc.start_link(ignore, ["2"], kill_timeout: 200)
      {:ok, _} = Proc.read(p)
      {:ok, os_pid} = Proc.os_pid(p)
      {us, :ok} = :timer.tc(fn -> Proc.stop(p) end)
      assert us >= 200_000
      refute alive?(os_pid)
    end
  end

  describe "lines" do
    test "one line per read, split across writes, the last one without its newline" do
      {:ok, p} = Proc.start("cat", [], lines: true)
      :ok = Proc.write(p, "ab")
      # Half a line is not a line yet.
      assert Proc.read(p, 100) == {:error, :timeout}
      :ok = Proc.write(p, "c\nde")
      assert Proc.read(p) == {:ok, "abc\n"}
      assert Proc.read(p, 100) == {:error, :timeout}
      :ok = Proc.write(p, "f\n\ng")
      assert Proc.read(p) == {:ok, "def\n"}
      assert Proc.read(p) == {:ok, "\n"}
      :ok = Proc.close_stdin(p)
      assert Proc.read(p) == {:ok, "g"}
      assert Proc.read(p) == :eof
      assert {:ok, 0} = Proc.await_exit(p)
    end

    test "a reader waiting at the exit gets the partial last line, then :eof" do
      {:ok, p} = Proc.start("sh", ["-c", "printf 'x\ny'; read _"], lines: true)
      assert Proc.read(p) == {:ok, "x\n"}
      reader = Task.async(fn -> {Proc.read(p, 5000), Proc.read(p, 5000)} end)
      Process.sleep(50)
      :ok = Proc.close_stdin(p)
      assert Task.await(reader) == {{:ok, "y"}, :eof}
    end

    test "the documented example" do
      {:ok, p} = Corral.Process.start("printf", ["one\ntwo\nthree"], lines: true)
      {:ok, "one\n"} = Corral.Process.read(p)
      {:ok, "two\n"} = Corral.Process.read(p)
      {:ok, "three"} = Corral.Process.read(p)
      :eof = Corral.Process.read(p)
    end

    test "many lines through a small window arrive whole and in order" do
      {:ok, p} = Proc.start("seq", ["1", "200000"], lines: true, window: 4096)
      lines = read_lines(p)
      assert length(lines) == 200_000
      assert lines == Enum.map(1..200_000, &"#{&1}\n")
      assert {:ok, 0} = Proc.await_exit(p)
    end

    test "a line longer than the window does not stall the child; long lines come in pieces" do
      long = String.duplicate("a", 100_000)
      # The child stays until its stdin closes: once it is gone, the driver
      # drains the pipe whatever the window.
      script = "printf '%s\\nend\\n' #{long}; read _"
      {:ok, p} = Proc.start("sh", ["-c", script], lines: true, window: 4096)
      assert {:ok, first} = Proc.read(p)
      assert first == String.duplicate("a", 65536)
      assert Proc.read(p) == {:ok, String.duplicate("a", 100_000 - 65536) <> "\n"}
      assert Proc.read(p) == {:ok, "end\n"}
      :ok = Proc.close_stdin(p)
      assert Proc.read(p) == :eof

      {:ok, p} =
        Proc.start("sh", ["-c", "printf 0123456789abcdef"], lines: true, max_line_length: 10)

      assert read_lines(p) == ["0123456789", "abcdef"]
    end

    test "a slow reader holds the child back: at most one window of lines is buffered" do
      {:ok, p} = Proc.start("yes", [], window: 65536, lines: true)
      Process.sleep(300)
      # Lines of "y\n": the splitter holds at most one byte outside the window.
      assert Proc.stats(p).bytes_out <= 65536 + 1
      assert Proc.read(p) == {:ok, "y\n"}
      :ok = Proc.kill(p)
      assert Enum.all?(read_lines(p), &(&1 == "y\n"))
      assert {:ok, 137} = Proc.await_exit(p)
    end

    test "stderr lines are tagged by read_any" do
      {:ok, p} =
        Proc.start("sh", ["-c", "printf 'o1\no'; printf 'e1\ne' >&2; printf '2\n'"],
          lines: true,
          stderr: :consume
        )

      assert {:ok, 0} = Proc.await_exit(p)
      assert Proc.read_stderr(p) == {:ok, "e1\n"}
      assert Proc.read(p) == {:ok, "o1\n"}
      assert Proc.read_any(p) == {:ok, {:stdout, "o2\n"}}
      assert Proc.read_any(p) == {:ok, {:stderr, "e"}}
      assert Proc.read_any(p) == :eof
    end

    test "a bad value is an error" do
      assert Proc.start("true", [], lines: 1) == {:error, {:bad_option, :lines, 1}}

      assert Proc.start("true", [], lines: true, max_line_length: 0) ==
               {:error, {:bad_option, :max_line_length, 0}}

      assert Proc.start("true", [], lines: "yes") == {:error, {:bad_option, :lines, "yes"}}
    end
  end

  test "start errors" do
    assert Proc.start("corral-no-such-program", []) == {:error, :enoent}
    assert {:error, {:unknown_option, :bogus}} = Proc.start("true", [], bogus: 1)
  end

  defp read_all(p, acc \\ []) do
    case Proc.read(p, 5000) do
      {:ok, bin} -> read_all(p, [acc | bin])
      :eof -> IO.iodata_to_binary(acc)
    end
  end

  defp read_lines(p, acc \\ []) do
    case Proc.read(p, 5000) do
      {:ok, line} -> read_lines(p, [line | acc])
      :eof -> Enum.reverse(acc)
    end
  end

  defp state(pid) do
    case File.read("/proc/#{pid}/stat") do
      {:ok, stat} -> stat |> String.split(") ") |> List.last() |> String.split(" ") |> hd()
      _ -> nil
    end
  end

  defp read_tree_pids(p, count, buf) do
    pids =
      for ["pid", n] <- buf |> String.split("\n") |> Enum.drop(-1) |> Enum.map(&String.split/1),
          do: String.to_integer(n)

    if length(pids) >= count do
      pids
    else
      {:ok, more} = Proc.read(p)
      read_tree_pids(p, count, buf <> more)
    end
  end
end
