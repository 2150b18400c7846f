defmodule Corral.StreamTest do
  # Not async: the round trip measures the VM's memory, and several tests
  # look for leftover OS processes.
  use ExUnit.Case, async: false
  import Corral.Test.OS
  import ExUnit.CaptureIO

  @mib 1024 * 1024

  describe "output" do
    test "stream! yields stdout in order, lazily, as binaries" do
      {expected, 0} = System.cmd("seq", ["1", "200000"])
      stream = Corral.stream!("seq", ["1", "200000"])
      chunks = Enum.to_list(stream)
      assert Enum.all?(chunks, &is_binary/1)
      assert IO.iodata_to_binary(chunks) == expected
      # Every enumeration runs the command again.
      assert Enum.join(stream) == expected
    end

    test "a consumer that stops pulling holds at most one window" do
      {:ok, s} = :corral_stream.open("yes", [], window: 65536)
      {first, s} = :corral_stream.next(s)
      assert is_binary(first)
      Process.sleep(300)
      {:messages, messages} = Process.info(self(), :messages)
      queued = for {_port, {:data, _, bin}} <- messages, reduce: 0, do: (n -> n + byte_size(bin))
      # Without the credit window `yes` would have written hundreds of MiB.
      assert byte_size(first) + queued <= 65536
      assert :ok = :corral_stream.close(s)
    end

    test "the command's options apply" do
      assert Corral.stream!("pwd", [], cd: "/tmp") |> Enum.join() == "/tmp\n"

      assert Corral.stream!("sh", ["-c", "echo $CORRAL_X"], env: [{"CORRAL_X", "y"}])
             |> Enum.join() == "y\n"
    end
  end

  describe "input" do
    test "binary, iodata, enumerable, and a sink function" do
      assert Corral.stream!("cat", [], input: "abc") |> Enum.join() == "abc"
      assert Corral.stream!("cat", [], input: ["a", ?b, ["c"]]) |> Enum.join() == "abc"

      assert Corral.stream!("cat", [], input: 1..3 |> Stream.map(&"#{&1},")) |> Enum.join() ==
               "1,2,3,"

      sink_input = fn sink ->
        :ok = sink.("x")
        :ok = sink.(["y", "z"])
      end

      assert Corral.stream!("cat", [], input: sink_input) |> Enum.join() == "xyz"
    end

    test "the pipe form takes the input first" do
      assert ["b\n", "a\n"] |> Corral.stream!("sort", []) |> Enum.join() == "a\nb\n"
      assert "hello" |> Corral.stream!("tr", ["a-z", "A-Z"]) |> Enum.join() == "HELLO"

      assert Stream.map(1..3, &"#{&1}\n") |> Corral.stream("tac", [], []) |> Enum.to_list() ==
               ["3\n2\n1\n", {:exit, 0}]
    end

    test "File.stream! piped into grep" do
      path = Path.join(System.tmp_dir!(), "corral_stream_#{System.unique_integer([:positive])}")
      File.write!(path, Enum.map(1..10_000, &"line #{&1}\n"))

      try do
        out = File.stream!(path, [], 4096) |> Corral.stream!("grep", ["99"]) |> Enum.join()

        assert out ==
                 Enum.join(for(i <- 1..10_000, String.contains?("#{i}", "99"), do: "line #{i}\n"))
      after
        File.rm(path)
      end
    end

    test "an input that raises is raised in the consumer, and the child is stopped" do
      marker = "corral-raise-#{System.unique_integer([:positive])}"

      input =
        Stream.map([1, 2], fn
          1 -> "ok\n"
          2 -> raise "input broke"
        end)

      assert_raise RuntimeError, "input broke", fn ->
        Corral.stream!("sh", ["-c", "cat; sleep 100", marker], input: input) |> Enum.to_list()
      end

      assert pids_matching(marker) == []
    end
  end

  describe "1 GiB round trip through cat" do
    @tag timeout: 120_000
    test "bytes exact, memory bounded" do
      base = :crypto.strong_rand_bytes(@mib - 4)
      chunk = fn i -> [<<i::32>>, base] end
      count = 1024

      expected =
        Task.async(fn ->
          Enum.reduce(1..count, :crypto.hash_init(:sha256), &:crypto.hash_update(&2, chunk.(&1)))
          |> :crypto.hash_final()
        end)

      :erlang.garbage_collect()
      baseline = :erlang.memory(:total)
      sampler = start_sampler()

      {hash, size} =
        Stream.map(1..count, chunk)
        |> Corral.stream!("cat", [])
        |> Enum.reduce({:crypto.hash_init(:sha256), 0}, fn bin, {h, n} ->
          {:crypto.hash_update(h, bin), n + byte_size(bin)}
        end)

      peak = stop_sampler(sampler)
      assert size == count * @mib
      assert :crypto.hash_final(hash) == Task.await(expected, 60_000)
      growth = peak - baseline
      assert growth < 64 * @mib, "VM memory grew by #{div(growth, @mib)} MiB"
    end
  end

  describe "exit" do
    test "stream! raises Corral.ExitError after the last chunk" do
      parent = self()
      stream = Corral.stream!("sh", ["-c", "echo last words; exit 3"])

      error =
        assert_raise Corral.ExitError, fn ->
          Enum.each(stream, &send(parent, {:chunk, &1}))
        end

      assert error.status == 3
      assert_received {:chunk, "last words\n"}

      error =
        assert_raise Corral.ExitError, fn ->
          Corral.stream!("sh", ["-c", "kill -TERM $$"]) |> Enum.to_list()
        end

      assert error.status == 128 + 15
      assert Exception.message(error) =~ "status 143"
    end

    test "stream ends with {:exit, status}" do
      assert Corral.stream("sh", ["-c", "echo hi; exit 3"]) |> Enum.to_list() == [
               "hi\n",
               {:exit, 3}
             ]

      assert Corral.stream("true", []) |> Enum.to_list() == [{:exit, 0}]
      assert Corral.stream("sh", ["-c", "kill -KILL $$"]) |> Enum.to_list() == [{:exit, 137}]
    end

    test "a child that cannot start" do
      assert Corral.stream("pwd", [], cd: "/nonexistent/corral") |> Enum.to_list() ==
               [{:exit, {:error, {:enoent, :chdir}}}]

      assert_raise Corral.Error, ~r/enoent/, fn ->
        Corral.stream!("pwd", [], cd: "/nonexistent/corral") |> Enum.to_list()
      end

      assert_raise ErlangError, ~r/enoent/, fn -> Corral.stream!("corral-no-such-program", []) end

      assert_raise ArgumentError, ~r/unknown option :bogus/, fn ->
        Corral.stream!("true", [], bogus: 1)
      end

      assert_raise ArgumentError, ~r/:ignore_epipe/, fn ->
        Corral.stream!("true", [], ignore_epipe: 1)
      end

      assert_raise ArgumentError, ~r/:input/, fn -> Corral.stream!("true", [], input: 42) end
    end
  end

  describe "halting early" do
    test "Enum.take on yes stops it before returning" do
      marker = "corral-take-#{System.unique_integer([:positive])}"
      assert [chunk] = Corral.stream!("yes", [marker]) |> Enum.take(1)
      assert String.starts_with?(chunk, marker <> "\n")
      assert pids_matching(marker) == []
      assert Process.info(self(), :messages) == {:messages, []}
    end

    test "Stream.take_while stops the whole process group" do
      marker = "corral-takewhile-#{System.unique_integer([:positive])}"
      script = "yes #{marker} & yes #{marker} & yes #{marker}"

      Corral.stream!("sh", ["-c", script])
      |> Stream.take_while(fn _ -> true end)
      |> Enum.take(3)

      assert pids_matching(marker) == []
    end

    test "a consumer that dies takes the child with it" do
      marker = "corral-die-#{System.unique_integer([:positive])}"
      parent = self()

      pid =
        spawn(fn ->
          Corral.stream!("yes", [marker])
          |> Stream.each(fn _ -> send(parent, :running) end)
          |> Stream.run()
        end)

      assert_receive :running
      assert [_] = pids_matching(marker)
      Process.exit(pid, :kill)
      assert eventually(fn -> pids_matching(marker) == [] end)
    end
  end

  describe "stderr" do
    @script "echo out; echo err >&2"

    test ":consume tags elements" do
      elements = Corral.stream!("sh", ["-c", @script], stderr: :consume) |> Enum.to_list()
      assert Enum.sort(elements) == [{:stderr, "err\n"}, {:stdout, "out\n"}]

      assert Corral.stream("sh", ["-c", "echo err >&2; exit 1"], stderr: :consume)
             |> Enum.to_list() ==
               [{:stderr, "err\n"}, {:exit, 1}]
    end

    test ":redirect merges, :discard drops, the default goes to the VM's stderr" do
      merged = Corral.stream!("sh", ["-c", @script], stderr: :redirect) |> Enum.join()
      assert merged |> String.split("\n", trim: true) |> Enum.sort() == ["err", "out"]

      assert Corral.stream!("sh", ["-c", @script], stderr_to_stdout: true)
             |> Enum.join()
             |> byte_size() == 8

      assert capture_io(:stderr, fn ->
               assert Corral.stream!("sh", ["-c", @script], stderr: :discard) |> Enum.join() ==
                        "out\n"
             end) == ""

      assert capture_io(:stderr, fn ->
               assert Corral.stream!("sh", ["-c", @script]) |> Enum.join() == "out\n"
             end) == "err\n"
    end
  end

  describe "EPIPE" do
    @big :binary.copy("x", 10_000_000)

    test "is a value, never a crash" do
      assert Corral.stream("head", ["-c", "10"], input: @big) |> Enum.to_list() |> Enum.sort() ==
               Enum.sort(["xxxxxxxxxx", {:error, :epipe}, {:exit, 0}])

      # stream! keeps the output and does not raise.
      assert Corral.stream!("head", ["-c", "10"], input: @big) |> Enum.join() == "xxxxxxxxxx"
    end

    test "the sink returns {:error, :epipe}, an Enumerable input just stops" do
      parent = self()

      input = fn sink ->
        result =
          Enum.reduce_while(Stream.cycle([@big]), :ok, fn chunk, :ok ->
            case sink.(chunk) do
              :ok -> {:cont, :ok}
              error -> {:halt, error}
            end
          end)

        send(parent, {:sink, result})
      end

      assert Corral.stream!("head", ["-c", "10"], input: input) |> Enum.join() == "xxxxxxxxxx"
      assert_receive {:sink, {:error, reason}}
      assert reason in [:epipe, :closed]

      endless = Stream.repeatedly(fn -> "y\n" end)
      assert Corral.stream!("head", ["-n", "2"], input: endless) |> Enum.join() == "y\ny\n"
    end

    test "ignore_epipe makes it silent" do
      assert Corral.stream("head", ["-c", "10"], input: @big, ignore_epipe: true)
             |> Enum.to_list() ==
               ["xxxxxxxxxx", {:exit, 0}]
    end
  end

  describe "lines" do
    test "yes, line by line" do
      assert Corral.stream!("yes", [], lines: true) |> Enum.take(2) == ["y\n", "y\n"]
    end

    test "File.stream! |> grep, counted in lines" do
      path = Path.join(System.tmp_dir!(), "corral-lines-#{System.unique_integer([:positive])}")
      File.write!(path, Enum.map(1..5000, &"line #{&1}#{if rem(&1, 3) == 0, do: " x"}\n"))

      try do
        count = File.stream!(path) |> Corral.stream!("grep", ["x"], lines: true) |> Enum.count()
        assert count == 1666
      after
        File.rm!(path)
      end
    end

    test "a line cut across chunks comes whole, the last may lack its newline" do
      # A 2-byte window cuts the output into chunks of at most 2 bytes.
      assert Corral.stream!("printf", ["abc\\nde\\nf"], lines: true, window: 2) |> Enum.to_list() ==
               ["abc\n", "de\n", "f"]
    end

    test "a line longer than max_line_length comes in pieces of exactly that size" do
      stream = Corral.stream!("printf", ["abcdefghij\\nk\\n"], lines: true, max_line_length: 4)
      assert Enum.to_list(stream) == ["abcd", "efgh", "ij\n", "k\n"]
    end

    test "stream/3 ends with the exit element after the last partial line" do
      assert Corral.stream("sh", ["-c", "printf 'a\\nb'; exit 2"], lines: true) |> Enum.to_list() ==
               ["a\n", "b", {:exit, 2}]
    end

    test "a consumer that stops pulling lines holds at most one window" do
      {:ok, s} = :corral_stream.open("yes", [], window: 65536, lines: true)
      {"y\n", s} = :corral_stream.next(s)
      Process.sleep(300)
      {:messages, messages} = Process.info(self(), :messages)
      queued = for {_port, {:data, _, bin}} <- messages, reduce: 0, do: (n -> n + byte_size(bin))
      assert queued <= 65536
      assert :ok = :corral_stream.close(s)
    end

    test "bad values are named" do
      assert_raise ArgumentError, "invalid option :lines with value :yes", fn ->
        Corral.stream!("yes", [], lines: :yes)
      end

      assert_raise ArgumentError, "invalid option :max_line_length with value 0", fn ->
        Corral.stream!("yes", [], lines: true, max_line_length: 0)
      end
    end
  end

  defp start_sampler do
    parent = self()

    spawn_link(fn ->
      sample = fn loop, peak ->
        receive do
          :stop -> send(parent, {:peak, peak})
        after
          20 -> loop.(loop, max(peak, :erlang.memory(:total)))
        end
      end

      sample.(sample, :erlang.memory(:total))
    end)
  end

  defp stop_sampler(pid) do
    send(pid, :stop)
    assert_receive {:peak, peak}, 5000
    peak
  end
end
