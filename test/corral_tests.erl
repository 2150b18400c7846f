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
    %% The program waits for its stdin to close, so it cannot exit (and
    %% have the rest delivered with its exit) while the window is checked,
    %% however slow the machine.
    {ok, Port} = corral:open("sh", ["-c", "printf 0123456789abcdefghij; read x"], [{window, 10}]),
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
    ok = corral:close_stdin(Port),
    ?assertEqual({exit_status, 1}, terminal(Port)).

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

%%% a port whose child has exited and which has closed itself

exited_port() ->
    {ok, Port} = corral:open("true", [], []),
    ?assertEqual({exit_status, 0}, terminal(Port)),
    corral:flush_exit(Port),
    ?assertEqual(undefined, erlang:port_info(Port, id)),
    Port.

%% The natural receive loop acks after every message: the child may have
%% exited and the port closed between two of them.
ack_on_a_closed_port_is_ok_test() ->
    ?assertEqual(ok, corral:ack(exited_port(), 10)).

close_stdin_on_a_closed_port_is_ok_test() ->
    ?assertEqual(ok, corral:close_stdin(exited_port())).

set_window_on_a_closed_port_is_ok_test() ->
    ?assertEqual(ok, corral:set_window(exited_port(), 4096)).

write_to_a_closed_port_is_an_error_test() ->
    ?assertEqual({error, closed}, corral:write(exited_port(), <<"late">>)).

os_pid_of_a_closed_port_test() ->
    ?assertEqual({error, closed}, corral:os_pid(exited_port())).

%% `cat' exits between two lines: the loop that acks every chunk never
%% crashes.
receive_loop_survives_an_exit_test() ->
    {ok, Port} = corral:open("head", ["-n", "1"], []),
    ok = corral:write(Port, <<"one\n">>),
    Loop = fun Loop(Acc) ->
        receive
            {Port, {data, stdout, Bin}} ->
                timer:sleep(50),
                ok = corral:ack(Port, byte_size(Bin)),
                ok = corral:set_window(Port, 65536),
                Loop(<<Acc/binary, Bin/binary>>);
            {Port, {exit_status, 0}} ->
                ok = corral:close_stdin(Port),
                Acc
        after 5000 -> error(no_exit)
        end
    end,
    ?assertEqual(<<"one\n">>, Loop(<<>>)).

spawn_returns_the_os_pid_test() ->
    {ok, Port, OsPid} = corral:spawn("sleep", ["30"], []),
    ?assertEqual({ok, OsPid}, corral:os_pid(Port)),
    ?assertEqual({exit_signal, 15}, corral:stop(Port)),
    ?assertNot(alive(OsPid)).

status_test_() ->
    [
        ?_assertEqual(3, corral:status({exit_status, 3})),
        ?_assertEqual(137, corral:status({exit_signal, 9})),
        ?_assertEqual({error, {spawner_died, running}}, corral:status({error, {spawner_died, running}}))
    ].

%%% corral_opts: one decision per setting

stderr_decision(Context, Opts) ->
    {ok, #{stderr := Stderr, request := #{stderr := Req}}} =
        corral_opts:normalize("true", [], Opts, Context),
    {Stderr, Req}.

stderr_decisions_test_() ->
    [
        ?_assertEqual({capture, pipe}, stderr_decision(open, [])),
        ?_assertEqual({inherit, inherit}, stderr_decision(cmd, [])),
        ?_assertEqual({forward, pipe}, stderr_decision(cmd, [{stderr, consume}])),
        ?_assertEqual({forward, pipe}, stderr_decision(stream, [])),
        ?_assertEqual({capture, pipe}, stderr_decision(stream, [{stderr, consume}])),
        ?_assertEqual({forward, pipe}, stderr_decision(process, [{stderr, pipe}])),
        ?_assertEqual({capture, pipe}, stderr_decision(process, [{stderr, consume}])),
        ?_assertEqual({merge, stdout}, stderr_decision(process, [{stderr_to_stdout, true}])),
        ?_assertEqual({merge, stdout}, stderr_decision(stream, [{stderr, redirect}])),
        ?_assertEqual({discard, null}, stderr_decision(cmd, [{stderr, null}])),
        ?_assertEqual({capture, pipe}, stderr_decision(cmd, [{capture_stderr_only, true}]))
    ].

opts_decisions_test() ->
    {ok, Cmd} = corral_opts:normalize("cat", [], [{capture_stderr_only, true}], cmd),
    ?assertMatch(#{output := stderr, input := none, request := #{stdin := null, stdout := null}}, Cmd),
    {ok, Stream} = corral_opts:normalize("cat", [], #{input => <<"x">>, lines => true}, stream),
    ?assertMatch(#{input := {data, <<"x">>}, lines := 65536, request := #{stdin := pipe}}, Stream),
    {ok, Short} = corral_opts:normalize("cat", [], [{lines, true}, {max_line_length, 8}], process),
    ?assertMatch(#{lines := 8}, Short),
    F = fun(_) -> ok end,
    ?assertMatch({ok, #{input := {call, F}}}, corral_opts:normalize("cat", [], [{input, F}], cmd)),
    ?assertMatch({ok, #{input := {sink, F}}}, corral_opts:normalize("cat", [], [{input, F}], stream)),
    ?assertEqual({error, {unknown_option, lines}}, corral_opts:normalize("cat", [], [{lines, true}], cmd)),
    ?assertEqual(
        {error, {bad_option, max_line_length, 0}},
        corral_opts:normalize("cat", [], [{max_line_length, 0}], stream)
    ).

%% Only cmd/3 without input lets the spawner hold the start report back: it
%% needs neither the pid nor the pipes before the child exits.
report_delay(Opts, Context) ->
    {ok, #{request := Request}} = corral_opts:normalize("cat", [], Opts, Context),
    maps:get(report_delay, Request, none).

start_report_decision_test() ->
    ?assertMatch(D when is_integer(D) andalso D > 0, report_delay([], cmd)),
    ?assertEqual(none, report_delay([{input, <<"x">>}], cmd)),
    ?assertEqual(none, report_delay([], open)),
    ?assertEqual(none, report_delay([], stream)),
    ?assertEqual(none, report_delay([], process)).

%% A child that fills its pipe while its report is held loses nothing: the
%% report goes out when the delay ends, and the reading starts then.
held_report_with_a_full_pipe_test() ->
    Size = 4 * 1024 * 1024,
    Script = "head -c " ++ integer_to_list(Size) ++ " /dev/zero; echo end",
    {Out, 0} = corral:cmd("sh", ["-c", Script], []),
    ?assertEqual(Size + 4, byte_size(Out)),
    ?assertEqual(<<"end\n">>, binary:part(Out, Size, 4)).

aliases_test() ->
    {ok, N} = corral_opts:normalize("true", [], [{delay_to_sigkill, 7}, {stdio_window, 9}], open),
    ?assertMatch(#{window := 9, request := #{kill_timeout := 7}}, N),
    %% The canonical name wins over its alias.
    {ok, N2} = corral_opts:normalize("true", [], [{stdio_window, 9}, {window, 11}], open),
    ?assertMatch(#{window := 11}, N2),
    [?assert(lists:member(A, corral_opts:spawn_keys())) || {A, _} <- corral_opts:aliases()].

env_map_test() ->
    ?assertEqual(
        {<<"v\n">>, 0}, corral:cmd("sh", ["-c", "echo $CORRAL_M"], [{env, #{"CORRAL_M" => "v"}}])
    ).

value_aliases_test() ->
    Decide = fun(Opts) ->
        {ok, #{stderr := E, request := #{stdout := O}}} = corral_opts:normalize("true", [], Opts, stream),
        {E, O}
    end,
    [
        ?assertEqual(Decide([{Option, Canonical}]), Decide([{Option, Alias}]))
     || {Option, Alias, Canonical} <- corral_opts:value_aliases()
    ],
    ?assertEqual({merge, pipe}, Decide([{stderr, stdout}])),
    ?assertEqual({discard, pipe}, Decide([{stderr, null}])),
    ?assertEqual({forward, null}, Decide([{stdout, discard}])).
