defmodule Corral.FirstSpawnTest do
  # The first spawns of a VM, made by many processes at once: each loads
  # the driver if it sees none loaded, and every one must succeed.
  use ExUnit.Case, async: true

  test "many processes spawning first at once all succeed" do
    ebin = :code.which(:corral) |> Path.dirname()

    script = ~S"""
    Self = self(),
    Pids = [spawn(fun() -> Self ! {self(), catch corral:cmd("/bin/echo", [integer_to_list(I)], [])} end)
            || I <- lists:seq(1, 16)],
    R = [receive {P, X} -> X end || P <- Pids],
    io:format("~p.~n", [R]),
    halt().
    """

    {out, 0} = Corral.cmd("erl", ["-noshell", "-pa", ebin, "-eval", script])
    {:ok, tokens, _} = out |> String.to_charlist() |> :erl_scan.string()
    {:ok, results} = :erl_parse.parse_term(tokens)
    assert results == for(i <- 1..16, do: {"#{i}\n", 0})
  end
end
