defmodule Corral.ParityTest do
  # Corral.cmd/3 against System.cmd/3: the same inputs are accepted, and bad
  # ones fail with the same exception and message (naming Corral.cmd/3).
  use ExUnit.Case, async: true

  defp message(fun) do
    try do
      fun.()
      flunk("expected an exception")
    rescue
      e -> {e.__struct__, Exception.message(e)}
    end
  end

  # The message System.cmd/3 gives, with Corral.cmd/3 named instead.
  defp same_error(system, corral) do
    {kind, msg} = message(system)
    assert {^kind, corral_msg} = message(corral)
    assert corral_msg == String.replace(msg, "System.cmd/3", "Corral.cmd/3")
  end

  describe "env" do
    test "a map, a list of pairs, or any enumerable of pairs" do
      script = ["-c", "echo $CORRAL_A/$CORRAL_B"]
      assert {"1/2\n", 0} = Corral.cmd("sh", script, env: %{"CORRAL_A" => "1", "CORRAL_B" => "2"})
      assert {"1/\n", 0} = Corral.cmd("sh", script, env: [{"CORRAL_A", "1"}])

      pairs =
        Stream.map([a: "x", b: "y"], fn {k, v} ->
          {"CORRAL_#{k |> to_string() |> String.upcase()}", v}
        end)

      assert {"x/y\n", 0} = Corral.cmd("sh", script, env: pairs)
      assert System.cmd("sh", script, env: pairs) == Corral.cmd("sh", script, env: pairs)
    end

    test "a map works from Erlang too" do
      assert {"v\n", 0} =
               :corral.cmd("sh", ["-c", "echo $CORRAL_M"], %{env: %{"CORRAL_M" => "v"}})
    end

    test "bad entries are named as System.cmd names them" do
      {ArgumentError, msg} = message(fn -> System.cmd("true", [], env: [:x]) end)

      assert_raise ArgumentError, msg <> " in :env", fn ->
        Corral.cmd("true", [], env: [:x])
      end

      assert_raise ArgumentError, ~s(invalid environment key-value {"A", 1} in :env), fn ->
        Corral.cmd("true", [], env: [{"A", 1}])
      end

      assert_raise ArgumentError, "invalid option :env with value :x", fn ->
        Corral.cmd("true", [], env: :x)
      end
    end
  end

  describe "arguments" do
    test "must be binaries, as for System.cmd" do
      same_error(fn -> System.cmd("echo", [~c"/usr"]) end, fn ->
        Corral.cmd("echo", [~c"/usr"])
      end)

      same_error(fn -> System.cmd("echo", [:foo]) end, fn -> Corral.cmd("echo", [:foo]) end)

      assert_raise ArgumentError, "all arguments for Corral.stream!/3 must be binaries", fn ->
        Corral.stream!("echo", [:foo])
      end
    end

    test "the command must be a binary" do
      assert_raise FunctionClauseError, fn -> Corral.cmd(:echo, []) end
      assert_raise FunctionClauseError, fn -> Corral.cmd(~c"echo", []) end
      assert_raise FunctionClauseError, fn -> Corral.stream!(:echo, []) end
    end

    test "the Erlang API keeps accepting strings and atoms" do
      assert {"a b\n", 0} = :corral.cmd(~c"echo", [~c"a", :b])
    end
  end

  describe "null bytes" do
    test "in the program, as System.cmd words it" do
      same_error(fn -> System.cmd("ec\0ho", []) end, fn -> Corral.cmd("ec\0ho", []) end)
    end

    test "in args, cd, arg0 and env, naming the option" do
      assert_raise ArgumentError,
                   "cannot execute Corral.cmd/3 for :args with null byte, got: #{inspect("a\0b")}",
                   fn ->
                     Corral.cmd("echo", ["a\0b"])
                   end

      assert_raise ArgumentError,
                   "cannot execute Corral.cmd/3 for :cd with null byte, got: #{inspect("/t\0mp")}",
                   fn ->
                     Corral.cmd("true", [], cd: "/t\0mp")
                   end

      assert_raise ArgumentError,
                   ~r/^cannot execute Corral.cmd\/3 for :arg0 with null byte/,
                   fn ->
                     Corral.cmd("true", [], arg0: "a\0")
                   end

      assert_raise ArgumentError,
                   "cannot execute Corral.cmd/3 for :env with null byte, got: #{inspect({"A", "x\0"})}",
                   fn -> Corral.cmd("true", [], env: %{"A" => "x\0"}) end

      assert_raise ArgumentError, ~r/^cannot execute Corral.stream\/3 for :args/, fn ->
        Corral.stream("echo", ["\0"])
      end
    end
  end

  describe "System.cmd's options" do
    test "bad values give System.cmd's message" do
      for opt <- [cd: ~c"/tmp", cd: 1, arg0: :a, stderr_to_stdout: :yes, parallelism: 1] do
        same_error(fn -> System.cmd("true", [], [opt]) end, fn ->
          Corral.cmd("true", [], [opt])
        end)
      end
    end

    test "into must be collectable, as for System.cmd" do
      same_error(fn -> System.cmd("echo", [], into: 1) end, fn ->
        Corral.cmd("echo", [], into: 1)
      end)
    end

    test "good values give System.cmd's results" do
      for opts <- [
            [cd: "/tmp"],
            [arg0: "zero"],
            [stderr_to_stdout: true],
            [stderr_to_stdout: false],
            [parallelism: true],
            [into: []],
            [env: %{"CORRAL_P" => "1"}]
          ] do
        err = if opts[:stderr_to_stdout], do: "echo err >&2", else: ""
        args = ["-c", "echo $0 $CORRAL_P; pwd; #{err}"]
        # With into: [] both give chunks as they were read, and where the
        # pipe splits the output is timing, so the bytes are compared.
        {out, 0} = System.cmd("sh", args, opts)
        {corral_out, status} = Corral.cmd("sh", args, opts)
        assert is_binary(corral_out) == is_binary(out), "differs with #{inspect(opts)}"

        assert {IO.iodata_to_binary(corral_out), status} == {IO.iodata_to_binary(out), 0},
               "differs with #{inspect(opts)}"
      end
    end
  end

  describe "MuonTrap options" do
    test "the aliases are MuonTrap's names" do
      assert {"x\n", 0} = Corral.cmd("echo", ["x"], delay_to_sigkill: 10, stdio_window: 3)
    end
  end
end
