defmodule Corral.FaultsTest do
  # The spawner's failure paths as a VM sees them. Each test runs a VM of
  # its own whose spawner preloads corral_inject.so (c_src/faults/inject.cpp):
  # CORRAL_FAULT makes one call fail, or kills the spawner inside it, in the
  # first spawner only (CORRAL_FAULT_ONCE), so the next one runs clean. Each
  # fault must end in a clear error, leave no fd in the VM and no process,
  # and the next spawn must work.
  use ExUnit.Case, async: true

  @shim Path.expand("../build/native/corral_inject.so", __DIR__)

  # Runs `body` (Erlang expressions ending in a map) in a new VM under
  # `fault`, then a clean spawn, and returns that map with the VM's fd count
  # before the first spawn and after the clean one.
  defp in_vm(fault, body) do
    assert File.exists?(@shim), "#{@shim} is missing: run make native"
    ebin = :code.which(:corral) |> Path.dirname()
    once = Path.join(System.tmp_dir!(), "corral_fault_once.#{System.unique_integer([:positive])}")

    script =
      ~S"""
      Fds = fun() -> {ok, L} = file:list_dir("/proc/self/fd"), length(L) end,
      Before = Fds(),
      R = begin
      """ <>
        body <>
        ~S"""
        end,
        {<<"again\n">>, 0} = corral:cmd("echo", ["again"]),
        After = fun W(0) -> Fds(); W(N) -> case Fds() of Before -> Before; _ -> timer:sleep(10), W(N - 1) end end(200),
        io:format("~p.~n", [R#{fds_before => Before, fds_after => After}]),
        halt().
        """

    env = [
      {"LD_PRELOAD", @shim},
      {"CORRAL_FAULT", fault},
      {"CORRAL_FAULT_PROC", "corral_spawner"},
      {"CORRAL_FAULT_ONCE", once}
    ]

    {out, status} = Corral.cmd("erl", ["-noshell", "-pa", ebin, "-eval", script], env: env)
    File.rm(once)
    assert status == 0, out
    {:ok, tokens, _} = out |> String.to_charlist() |> :erl_scan.string()
    {:ok, result} = :erl_parse.parse_term(tokens)
    # Before the first spawn no spawner runs; after, one does: its request
    # socket is the one fd more. Anything else is a leak.
    assert result.fds_after == result.fds_before + 1, inspect(result)
    result
  end

  # Erlang: waits up to 2 s for an OS pid to be gone or a zombie.
  @gone ~S"""
  Gone = fun G(_, 0) -> false;
             G(P, N) -> case file:read_file("/proc/" ++ integer_to_list(P) ++ "/stat") of
                          {error, _} -> true;
                          {ok, S} -> case string:find(S, ") Z") of
                                       nomatch -> timer:sleep(10), G(P, N - 1);
                                       _ -> true
                                     end
                        end
         end,
  """

  test "a spawner that dies reading the request: {spawner_died, spawn}" do
    r = in_vm("recvmsg:die:0:1", ~S'#{first => corral:cmd("true", [])}')
    assert r.first == {:error, {:spawner_died, :spawn}}
  end

  test "a spawner that dies starting a child: {spawner_died, spawn}; running children die too" do
    # 4 pipes for the first child (stdin, stdout, stderr, exec status): the
    # second request kills the spawner in its first pipe2.
    r =
      in_vm(
        "pipe2:die:4:1",
        @gone <>
          ~S"""
          {ok, Running, OsPid} = corral:spawn("sleep", ["30"], []),
          Second = corral:cmd("true", []),
          #{second => Second, running => corral:await_terminal(Running, 5000),
            child_gone => Gone(OsPid, 200)}
          """
      )

    assert r.second == {:error, {:spawner_died, :spawn}}
    assert r.running == {:error, {:spawner_died, :running}}
    assert r.child_gone
  end

  test "EMFILE in the spawner is {emfile, pipe}, and the same spawner serves on" do
    r =
      in_vm("pipe2:EMFILE:0:1", ~S"""
      Sp = fun() -> string:trim(os:cmd("pgrep -f corral_spawner -P " ++ os:getpid())) end,
      First = corral:cmd("true", []),
      Spawner = Sp(),
      #{first => First, next => corral:cmd("echo", ["ok"]), same => Spawner =:= Sp()}
      """)

    assert r.first == {:error, {:emfile, :pipe}}
    assert r.next == {"ok\n", 0}
    assert r.same
  end
end
