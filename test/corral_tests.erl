%% EUnit tests of the Erlang API (corral, corral_opts).
-module(corral_tests).

-include_lib("eunit/include/eunit.hrl").

%%% open/3 and the port messages

echo_test() ->
    {ok, Port} = corral:open("echo", ["hello"], []),
    ?assertEqual(<<"hello\n">>, collect(Port, stdout)),
    ?assertEqual({exit_status, 0}, terminal(Port)).

terminal_message_comes_after_all_output_test() ->
    {ok, Port} = corral:open("sh", ["-c", "seq 1 20000; exit 4"], []),
    {Out, Terminal} = drain(Port, []),
    ?assertEqual({exit_status, 4}, Terminal),
    ?assertEqual(list_to_binary(os:cmd("seq 1 20000")), Out).

stderr_is_tagged_test() ->
    {ok, Port} = corral:open("sh", ["-c", "echo err >&2"], []),
    receive
        {Port, {data, stderr, Bin}} -> ?assertEqual(<<"err\n">>, Bin)
    after 5000 -> error(no_stderr)
    end,
    ?assertEqual({exit_status, 0}, terminal(Port)).

write_and_close_stdin_test() ->
    {ok, Port} = corral:open("cat", [], []),
    ok = corral:write(Port, [<<"ab">>, $c, [<<"d">>]]),
    ok = corral:close_stdin(Port),
    ?assertEqual(<<"abcd">>, collect(Port, stdout)),
    ?assertEqual({exit_status, 0}, terminal(Port)),
    ?assertEqual({error, closed}, corral:write(Port, <<"late">>)).

%% With a window of 10 bytes the driver stops reading until we ack (while the
%% child lives: once its group is gone the pipe is drained regardless).
credit_window_holds_output_back_test() ->
    {ok, Port} = corral:open("sh", ["-c", "printf 0123456789abcdefghij; sleep 0.5"], [{window, 10}]),
    First = receive {Port, {data, stdout, B1}} -> B1 after 5000 -> error(no_data) end,
    ?assertEqual(10, byte_size(First)),
    receive
        {Port, {data, stdout, _}} = Unexpected -> error({read_past_window, Unexpected})
    after 200 -> ok
    end,
    {ok, #{unacked := 10, bytes_out := 10}} = corral:stats(Port),
    ok = corral:ack(Port, 10),
    receive {Port, {data, stdout, B2}} -> ?assertEqual(<<"abcdefghij">>, B2) after 5000 -> error(no_more) end,
    ok = corral:ack(Port, 10),
    ?assertEqual({exit_status, 0}, terminal(Port)).

signal_reaches_the_group_test() ->
    {ok, Port} = corral:open("sleep", ["30"], []),
    {ok, Pid} = corral:os_pid(Port),
    ok = corral:signal(Port, sigusr1),
    ?assertEqual({exit_signal, 10}, terminal(Port)),
    ?assertNot(alive(Pid)),
    ?assertEqual({error, closed}, corral:signal(Port, sigterm)).

stop_returns_after_the_tree_is_gone_test() ->
    %% The leader and its two children ignore SIGTERM: SIGKILL after 100 ms.
    {ok, Port} = corral:open(fixture("ignore_term"), ["2"], [{kill_timeout, 100}]),
    {ok, Pid} = corral:os_pid(Port),
    Pids = ready_pids(Port, 3),
    {Micros, Terminal} = timer:tc(fun() -> corral:stop(Port) end),
    ?assertEqual({exit_signal, 9}, Terminal),
    ?assert(Micros >= 100000),
    ?assert(lists:member(Pid, Pids)),
    [?assertNot(alive(P)) || P <- Pids].

stop_signal_option_test() ->
    {ok, Port} = corral:open("sleep", ["30"], [{stop_signal, sighup}]),
    ?assertEqual({exit_signal, 1}, corral:stop(Port, 5000)).

stats_count_bytes_test() ->
    {ok, Port} = corral:open("cat", [], []),
    ok = corral:write(Port, binary:copy(<<"x">>, 1000)),
    %% cat is still running (stdin open), so the port is too
    ?assertEqual(1000, read_bytes(Port, 1000)),
    {ok, Stats} = corral:stats(Port),
    ?assertMatch(#{bytes_in := 1000, bytes_out := 1000, bytes_err := 0, unacked := 0}, Stats),
    ?assert(maps:get(read_count, Stats) >= 1),
    ok = corral:close_stdin(Port),
    ?assertEqual({exit_status, 0}, terminal(Port)),
    ?assertEqual({error, closed}, corral:stats(Port)).

owner_exit_kills_the_child_test() ->
    Self = self(),
    Owner = spawn(fun() ->
        {ok, Port} = corral:open("sleep", ["30"], []),
        Self ! corral:os_pid(Port),
        receive never -> ok end
    end),
    Pid = receive {ok, P} -> P after 5000 -> error(no_pid) end,
    ?assert(alive(Pid)),
    exit(Owner, kill),
    ?assert(eventually(fun() -> not alive(Pid) end, 3000)).

%%% errors

open_errors_test_() ->
    [
        ?_assertEqual({error, enoent}, corral:open("corral-no-such-cmd", [], [])),
        ?_assertEqual({error, {eacces, exec}}, corral:open("/etc/passwd", [], [])),
        ?_assertEqual({error, {enoent, exec}}, corral:open("/no/such/file", [], [])),
        ?_assertEqual({error, {enoent, chdir}}, corral:open("pwd", [], [{cd, "/no/such/dir"}])),
        ?_assertEqual({error, {bad_option, args, <<"a", 0>>}}, corral:open("echo", [<<"a", 0>>], [])),
        ?_assertEqual({error, {bad_option, window, 0}}, corral:open("true", [], [{window, 0}])),
        ?_assertEqual({error, {bad_option, cd, ""}}, corral:open("pwd", [], [{cd, ""}])),
        ?_assertEqual({error, {unknown_option, colour}}, corral:open("true", [], [{colour, red}])),
        ?_assertEqual(
            {error, {unknown_option, timeout}}, corral:open("true", [], [{timeout, 5}])
        ),
        ?_assertEqual(
            {error, {bad_option, stop_signal, sigfoo}}, corral:open("true", [], [{stop_signal, sigfoo}])
        ),
        ?_assertEqual(
            {error, {bad_option, env, {"A", <<"x", 0>>}}},
            corral:open("true", [], [{env, [{"A", <<"x", 0>>}]}])
        )
    ].

%%% cmd/3

cmd_test_() ->
    [
        ?_assertEqual({<<"hi\n">>, 0}, corral:cmd("echo", ["hi"])),
        ?_assertEqual({<<>>, 3}, corral:cmd("sh", ["-c", "exit 3"], [])),
        ?_assertEqual({<<>>, 137}, corral:cmd("sh", ["-c", "kill -9 $$"], [])),
        ?_assertEqual({<<"in">>, 0}, corral:cmd("cat", [], [{input, <<"in">>}])),
        ?_assertEqual({<<"/\n">>, 0}, corral:cmd("pwd", [], #{cd => "/"})),
        ?_assertEqual(
            {[<<"b">>, <<"a">>], 0},
            corral:cmd("sh", ["-c", "printf a; sleep 0.1; printf b"], [
                {fold, {fun(C, Acc) -> [C | Acc] end, []}}
            ])
        ),
        ?_assertEqual({<<>>, timeout}, corral:cmd("sleep", ["30"], [{timeout, 50}])),
        ?_assertEqual({error, enoent}, corral:cmd("corral-no-such-cmd", [])),
        ?_assertEqual({<<>>, 0}, corral:cmd("echo", ["x"], [{stdout, null}])),
        %% `into' is the Elixir layer's; from Erlang it is `fold'.
        ?_assertEqual({error, {unknown_option, into}}, corral:cmd("true", [], [{into, []}])),
        ?_assertEqual({<<>>, 0}, corral:cmd("true", [], [{parallelism, true}])),
        ?_assertEqual(
            {error, {bad_option, parallelism, yes}}, corral:cmd("true", [], [{parallelism, yes}])
        ),
        ?_assertEqual(
            {error, {bad_option, stdout, stderr}}, corral:cmd("echo", ["x"], [{stdout, stderr}])
        )
    ].

%% parallelism is the port's flag, as with System.cmd/3 (seen from an input
%% fun, which is given the port while the child waits for its stdin).
cmd_parallelism_reaches_the_port_test() ->
    Self = self(),
    Flag = fun(Opts) ->
        Input = fun(Port) -> Self ! {flag, erlang:port_info(Port, parallelism)} end,
        {<<>>, 0} = corral:cmd("cat", [], [{input, Input} | Opts]),
        receive
            {flag, {parallelism, B}} -> B
        after 5000 -> error(no_flag)
        end
    end,
    ?assertEqual(true, Flag([{parallelism, true}])),
    ?assertEqual(false, Flag([{parallelism, false}])),
    ?assertEqual(erlang:system_info(port_parallelism), Flag([])).

cmd_input_fun_test() ->
    Feed = fun(Port) -> [ok = corral:write(Port, integer_to_list(I)) || I <- lists:seq(1, 5)] end,
    ?assertEqual({<<"12345">>, 0}, corral:cmd("cat", [], [{input, Feed}])).

%%% corral_opts

signal_numbers_test_() ->
    [
        ?_assertEqual({ok, 15}, corral_opts:signal_number(sigterm)),
        ?_assertEqual({ok, 15}, corral_opts:signal_number(term)),
        ?_assertEqual({ok, 9}, corral_opts:signal_number(9)),
        ?_assertEqual(error, corral_opts:signal_number(0)),
        ?_assertEqual(error, corral_opts:signal_number(not_a_signal_name_at_all))
    ].

env_is_built_in_erlang_test() ->
    os:putenv("CORRAL_EUNIT_KEEP", "1"),
    os:putenv("CORRAL_EUNIT_DROP", "1"),
    {ok, #{request := #{env := Env}}} = corral_opts:normalize(
        "true", [], [{env, [{"CORRAL_EUNIT_DROP", false}, {<<"NEW">>, "v"}]}], corral_opts:spawn_keys()
    ),
    ?assert(lists:member(<<"CORRAL_EUNIT_KEEP=1">>, Env)),
    ?assert(lists:member(<<"NEW=v">>, Env)),
    ?assertNot(lists:any(fun(E) -> binary:match(E, <<"CORRAL_EUNIT_DROP">>) =/= nomatch end, Env)),
    {ok, #{request := #{env := Clear}}} = corral_opts:normalize(
        "true", [], [{clear_env, true}, {env, [{"A", "1"}]}], corral_opts:spawn_keys()
    ),
    ?assertEqual([<<"A=1">>], Clear).

%%% helpers

collect(Port, Stream) -> collect(Port, Stream, []).

collect(Port, Stream, Acc) ->
    receive
        {Port, {data, Stream, Bin}} ->
            _ = corral:ack(Port, byte_size(Bin)),
            collect(Port, Stream, [Bin | Acc])
    after 300 ->
        iolist_to_binary(lists:reverse(Acc))
    end.

drain(Port, Acc) ->
    receive
        {Port, {data, stdout, Bin}} ->
            _ = corral:ack(Port, byte_size(Bin)),
            drain(Port, [Bin | Acc]);
        {Port, Terminal} ->
            {iolist_to_binary(lists:reverse(Acc)), Terminal}
    after 10000 -> error(timeout)
    end.

terminal(Port) ->
    receive
        {Port, {exit_status, _} = T} -> T;
        {Port, {exit_signal, _} = T} -> T;
        {Port, {error, _} = T} -> T
    after 10000 -> error(no_terminal)
    end.

fixture(Name) ->
    filename:absname(filename:join(["test", "fixtures", "bin", Name])).

%% Reads "ready <pid>" lines until N pids are known.
ready_pids(Port, N) -> ready_pids(Port, N, <<>>).

ready_pids(Port, N, Buf) ->
    Lines = lists:droplast(binary:split(Buf, <<"\n">>, [global])),
    Pids = [binary_to_integer(P) || <<"ready ", P/binary>> <- Lines],
    case length(Pids) >= N of
        true ->
            Pids;
        false ->
            receive
                {Port, {data, stdout, Bin}} ->
                    _ = corral:ack(Port, byte_size(Bin)),
                    ready_pids(Port, N, <<Buf/binary, Bin/binary>>)
            after 5000 -> error({not_ready, Buf})
            end
    end.

read_bytes(_Port, 0) ->
    0;
read_bytes(Port, N) ->
    receive
        {Port, {data, stdout, Bin}} ->
            ok = corral:ack(Port, byte_size(Bin)),
            byte_size(Bin) + read_bytes(Port, N - byte_size(Bin))
    after 5000 -> error(no_data)
    end.

alive(Pid) ->
    case file:read_file("/proc/" ++ integer_to_list(Pid) ++ "/stat") of
        {ok, Stat} ->
            [_, After] = binary:split(Stat, <<") ">>),
            binary:first(After) =/= $Z;
        {error, _} ->
            false
    end.

eventually(Fun, Ms) when Ms =< 0 -> Fun();
eventually(Fun, Ms) ->
    case Fun() of
        true -> true;
        false -> timer:sleep(10), eventually(Fun, Ms - 10)
    end.
