defmodule Corral.CmdTest do
  # Not async: several tests count the VM's fds and the spawner's children.
  use ExUnit.Case, async: false
  import Corral.Test.OS

  doctest Corral

  describe "output" do
    test "seq 1 100000 is complete and exact in 100 of 100 runs" do
      {expected, 0} = System.cmd("seq", ["1", "100000"])
      assert byte_size(expected) == 588_895

      for run <- 1..100 do
        assert {^expected, 0} = Corral.cmd("seq", ["1", "100000"]), "run #{run} differed"
      end
    end

    test "the tail is never lost, even with a tiny window" do
      {expected, 0} = System.cmd("seq", ["1", "20000"])
      assert {^expected, 0} = Corral.cmd("seq", ["1", "20000"], stdio_window: 7)
    end

    test "into a list collects chunks in order" do
      {chunks, 0} = Corral.cmd("seq", ["1", "50000"], into: [])
      assert is_list(chunks)
      assert IO.iodata_to_binary(chunks) == elem(System.cmd("seq", ["1", "50000"]), 0)
    end

    test "stderr_to_stdout merges, capture_stderr_only keeps only stderr" do
      script = "echo out; echo err >&2"
      {merged, 0} = Corral.cmd("sh", ["-c", script], stderr_to_stdout: true)
      assert merged |> String.split("\n", trim: true) |> Enum.sort() == ["err", "out"]
      assert {"err\n", 0} = Corral.cmd("sh", ["-c", script], capture_stderr_only: true)
      assert {"out\n", 0} = Corral.cmd("sh", ["-c", script], stderr: :discard)
    end

    test "stderr is the VM's own by default, like System.cmd; :consume goes through :standard_error" do
      {ours, 0} = Corral.cmd("readlink", ["/proc/self/fd/2"])
      {theirs, 0} = System.cmd("readlink", ["/proc/self/fd/2"])
      assert ours == theirs
      assert String.trim(ours) == File.read_link!("/proc/#{:os.getpid()}/fd/2")

      captured =
        ExUnit.CaptureIO.capture_io(:stderr, fn ->
          assert {"out\n", 0} =
                   Corral.cmd("sh", ["-c", "echo out; echo err >&2"], stderr: :consume)
        end)

      assert captured == "err\n"
    end

    test "max_output_size keeps exactly that many bytes and stops the child" do
      assert {out, :max_output_exceeded} = Corral.cmd("yes", [], max_output_size: 100_000)
      assert out == String.duplicate("y\n", 50_000)
    end
  end

  describe "exit status" do
    test "0, 1 and 3" do
      assert {"", 0} = Corral.cmd("true", [])
      assert {"", 1} = Corral.cmd("false", [])
      assert {"", 3} = Corral.cmd("sh", ["-c", "exit 3"])
    end

    test "death by a signal reads 128 + signal" do
      assert {"", 137} = Corral.cmd("sh", ["-c", "kill -KILL $$"])
      assert {"", 143} = Corral.cmd("sh", ["-c", "kill -TERM $$"])
    end
  end

  describe "the child's setup" do
    test "cd" do
      assert {"/tmp\n", 0} = Corral.cmd("pwd", [], cd: "/tmp")
    end

    test "the child starts in the VM's current directory, and a relative cd is taken from it" do
      old = File.cwd!()
      Corral.cmd("true", [])

      try do
        File.cd!("/usr")
        assert {"/usr\n", 0} = Corral.cmd("pwd", [])
        assert {"/usr/bin\n", 0} = Corral.cmd("pwd", [], cd: "bin")
        assert System.cmd("pwd", []) == Corral.cmd("pwd", [])
      after
        File.cd!(old)
      end
    end

    test "a removed current directory is still the child's (System.cmd fails there)" do
      old = File.cwd!()

      dir =
        Path.join(System.tmp_dir!(), "corral_removed_cwd_#{System.unique_integer([:positive])}")

      File.mkdir_p!(dir)

      try do
        File.cd!(dir)
        File.rmdir!(dir)
        assert {"#{dir} (deleted)\n", 0} == Corral.cmd("readlink", ["/proc/self/cwd"])
        assert {"", 0} = Corral.cmd("ls", [])
      after
        File.cd!(old)
      end
    end

    test "env sets and unsets variables and inherits the rest" do
      System.put_env("CORRAL_INHERITED", "yes")
      System.put_env("CORRAL_DROPPED", "no")

      {out, 0} =
        Corral.cmd("sh", ["-c", "echo $CORRAL_SET/$CORRAL_INHERITED/${CORRAL_DROPPED-unset}"],
          env: [{"CORRAL_SET", "set"}, {"CORRAL_DROPPED", nil}]
        )

      assert out == "set/yes/unset\n"
    after
      System.delete_env("CORRAL_INHERITED")
      System.delete_env("CORRAL_DROPPED")
    end

    test "clear_env starts from an empty environment" do
      assert {"A=1\n", 0} = Corral.cmd("/usr/bin/env", [], clear_env: true, env: [{"A", "1"}])
    end

    test "arg0" do
      assert {"my-name\n", 0} = Corral.cmd("sh", ["-c", "echo $0"], arg0: "my-name")
    end

    test "the child is its own process-group leader" do
      {out, 0} = Corral.cmd("sh", ["-c", "echo $$ $(ps -o pgid= -p $$)"])
      [pid, pgid] = String.split(out)
      assert pid == pgid
    end

    test "the child inherits no fd beyond 0, 1 and 2" do
      {out, 0} = Corral.cmd("sh", ["-c", "ls /proc/$$/fd"])
      assert out |> String.split() |> Enum.sort() == ["0", "1", "2"]
    end
  end

  describe "input" do
    test "a binary piped through cat" do
      assert {"hello", 0} = Corral.cmd("cat", [], input: "hello")
    end

    test "iodata and an enumerable" do
      assert {"abc", 0} = Corral.cmd("cat", [], input: ["a", [?b], "c"])
      lines = Stream.map(1..1000, &"#{&1}\n")
      assert {out, 0} = Corral.cmd("cat", [], input: lines)
      assert out == Enum.join(lines)
    end

    test "input much larger than the window and the stdin queue" do
      data = :crypto.strong_rand_bytes(8 * 1024 * 1024)
      assert {^data, 0} = Corral.cmd("cat", [], input: data)
    end

    test "without input, stdin is closed so cat ends" do
      assert {"", 0} = Corral.cmd("cat", [])
    end

    test "an enumerable that raises stops the child and re-raises" do
      marker = "corral-input-raise-#{System.unique_integer([:positive])}"

      input =
        Stream.map(1..2, fn
          1 -> "x"
          2 -> raise "boom"
        end)

      assert_raise RuntimeError, "boom", fn ->
        Corral.cmd("sh", ["-c", "cat >/dev/null; sleep 30 # #{marker}"], input: input)
      end

      assert eventually(fn -> pids_matching(marker) == [] end)
    end
  end

  describe "timeout" do
    test "kills the whole tree before returning {acc, :timeout}" do
      marker = "#{300 + rem(System.unique_integer([:positive]), 1000)}.5"

      {elapsed, {out, :timeout}} =
        :timer.tc(fn ->
          Corral.cmd("sh", ["-c", "echo started; sleep #{marker} & sleep #{marker} & wait"],
            timeout: 300
          )
        end)

      assert out == "started\n"
      assert elapsed >= 300_000
      # Already gone when cmd returned: no waiting here.
      assert pids_matching("sleep #{marker}") == []
    end

    test "a child that ignores SIGTERM is SIGKILLed after delay_to_sigkill" do
      {elapsed, {_, :timeout}} =
        :timer.tc(fn ->
          Corral.cmd("sh", ["-c", "trap '' TERM; sleep 30"], timeout: 100, delay_to_sigkill: 200)
        end)

      assert elapsed >= 300_000 and elapsed < 5_000_000
    end
  end

  describe "errors" do
    test "a missing executable raises like System.cmd" do
      assert_raise ErlangError, ~r/enoent/, fn -> System.cmd("corral-no-such-cmd", []) end
      assert_raise ErlangError, ~r/enoent/, fn -> Corral.cmd("corral-no-such-cmd", []) end
      assert_raise ErlangError, ~r/enoent/, fn -> Corral.cmd("/no/such/file", []) end
    end

    test "exec failures are errors, never confused with exit status 1" do
      e = assert_raise Corral.Error, fn -> Corral.cmd("/etc/passwd", []) end
      assert e.reason == {:eacces, :exec}
      assert Exception.message(e) =~ "eacces"
      e = assert_raise Corral.Error, fn -> Corral.cmd("pwd", [], cd: "/no/such/dir") end
      assert e.reason == {:enoent, :chdir}
    end

    test "NUL bytes in args or env" do
      assert_raise ArgumentError, ~r/:args/, fn -> Corral.cmd("echo", ["a\0b"]) end
      assert_raise ArgumentError, ~r/:env/, fn -> Corral.cmd("true", [], env: [{"A", "x\0"}]) end
      assert_raise ArgumentError, ~r/:env/, fn -> Corral.cmd("true", [], env: [{"A=B", "x"}]) end
    end

    test "unknown and ill-typed options name the option" do
      assert_raise ArgumentError, "unknown option :colour", fn ->
        Corral.cmd("true", [], colour: :red)
      end

      assert_raise ArgumentError, ~r/option :timeout with value -1/, fn ->
        Corral.cmd("true", [], timeout: -1)
      end

      assert_raise ArgumentError, ~r/option :stderr with value :loud/, fn ->
        Corral.cmd("true", [], stderr: :loud)
      end

      assert_raise ArgumentError, ~r/option :stdio_window|option :window/, fn ->
        Corral.cmd("true", [], stdio_window: 0)
      end

      assert_raise ArgumentError, ~r/option :input/, fn -> Corral.cmd("cat", [], input: 42) end
    end

    test "failed starts leave nothing running and no fd behind" do
      Corral.cmd("true", [])
      spawner = spawner_pid()
      assert spawner
      fds = vm_fd_count()

      for _ <- 1..20 do
        catch_error(Corral.cmd("/etc/passwd", []))
        catch_error(Corral.cmd("pwd", [], cd: "/no/such/dir"))
        catch_error(Corral.cmd("corral-no-such-cmd", []))
      end

      assert eventually(fn -> children_of(spawner) == [] end)
      assert vm_fd_count() == fds
      assert zombies() == []
    end
  end

  describe "resources" do
    test "no fd leaked and no zombie after 1,000 runs" do
      Corral.cmd("true", [])
      fds = vm_fd_count()
      spawner = spawner_pid()

      for _ <- 1..1000 do
        assert {"x\n", 0} = Corral.cmd("echo", ["x"])
      end

      assert vm_fd_count() == fds
      assert zombies() == []
      assert eventually(fn -> children_of(spawner) == [] end)
      assert spawner_pid() == spawner
      assert Port.list() |> Enum.filter(&(Port.info(&1, :name) == {:name, ~c"corral_drv"})) == []
    end
  end
end
