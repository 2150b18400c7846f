%% EUnit tests for corral_stream, the Erlang streaming API.
-module(corral_stream_tests).

-include_lib("eunit/include/eunit.hrl").

collect(S) -> collect(S, []).

collect(S0, Acc) ->
    case corral_stream:next(S0) of
        eof -> lists:reverse(Acc);
        {E, S} -> collect(S, [E | Acc])
    end.

out(Elements) -> iolist_to_binary([B || B <- Elements, is_binary(B)]).

pull_test() ->
    {ok, S} = corral_stream:open("sh", ["-c", "echo hi; exit 3"], []),
    ?assertEqual([<<"hi\n">>, {exit, 3}], collect(S)).

signal_status_test() ->
    {ok, S} = corral_stream:open("sh", ["-c", "kill -TERM $$"], []),
    ?assertEqual([{exit, 143}], collect(S)).

input_fun_test() ->
    Input = fun(Sink) ->
        ok = Sink(<<"a">>),
        ok = Sink([<<"b">>, $c])
    end,
    {ok, S} = corral_stream:open("cat", [], [{input, Input}]),
    Elements = collect(S),
    ?assertEqual(<<"abc">>, out(Elements)),
    ?assertEqual({exit, 0}, lists:last(Elements)).

stderr_consume_test() ->
    {ok, S} = corral_stream:open("sh", ["-c", "echo err >&2"], [{stderr, consume}]),
    ?assertEqual([{stderr, <<"err\n">>}, {exit, 0}], collect(S)).

epipe_test() ->
    Big = binary:copy(<<"x">>, 10000000),
    {ok, S} = corral_stream:open("head", ["-c", "10"], [{input, Big}]),
    Elements = collect(S),
    ?assert(lists:member({error, epipe}, Elements)),
    ?assertEqual(<<"xxxxxxxxxx">>, out(Elements)),
    {ok, S2} = corral_stream:open("head", ["-c", "10"], [{input, Big}, {ignore_epipe, true}]),
    ?assertEqual([<<"xxxxxxxxxx">>, {exit, 0}], collect(S2)).

fold_test() ->
    Count = fun(Bin, N) -> {cont, N + byte_size(Bin)} end,
    ?assertEqual({588895, 0}, corral_stream:fold("seq", ["1", "100000"], [], Count, 0)).

fold_halt_stops_child_test() ->
    Marker = "corral-eunit-" ++ integer_to_list(erlang:unique_integer([positive])),
    Self = self(),
    Fun = fun(_Bin, N) when N >= 3 -> {halt, N}; (_Bin, N) -> {cont, N + 1} end,
    Wrapped = fun(Bin, N) ->
        N == 0 andalso (Self ! {pids, os:cmd("pgrep -f " ++ Marker)}),
        Fun(Bin, N)
    end,
    ?assertEqual({3, halted}, corral_stream:fold("yes", [Marker], [], Wrapped, 0)),
    receive
        {pids, Before} -> ?assertNotEqual("", Before)
    end,
    %% close/1 waited for the group: nothing is left, and no message either.
    ?assertEqual("", os:cmd("pgrep -f " ++ Marker)),
    ?assertEqual({messages, []}, process_info(self(), messages)).

errors_test() ->
    ?assertEqual({error, enoent}, corral_stream:open("corral-no-such-program", [], [])),
    ?assertEqual({error, {unknown_option, bogus}}, corral_stream:open("true", [], [{bogus, 1}])),
    ?assertEqual({error, {bad_option, input, 42}}, corral_stream:open("true", [], [{input, 42}])),
    ?assertEqual(
        {error, {bad_option, ignore_epipe, yes}},
        corral_stream:open("true", [], [{ignore_epipe, yes}])
    ),
    ?assertEqual(
        {error, {enoent, chdir}},
        corral_stream:fold("pwd", [], [{cd, "/nonexistent/corral"}], fun(_, A) -> {cont, A} end, 0)
    ).

input_crash_is_raised_test() ->
    Input = fun(_Sink) -> error(input_broke) end,
    {ok, S} = corral_stream:open("sh", ["-c", "cat; sleep 100"], [{input, Input}]),
    ?assertError(input_broke, collect(S)).

%%% lines

lines_test() ->
    {ok, S} = corral_stream:open("printf", ["a\\nbc\\n\\nd"], [{lines, true}]),
    ?assertEqual([<<"a\n">>, <<"bc\n">>, <<"\n">>, <<"d">>, {exit, 0}], collect(S)).

%% A window of 3 bytes cuts the output into chunks of at most 3.
line_split_across_chunks_test() ->
    {ok, S} = corral_stream:open("printf", ["hello\\nworld\\n"], [{lines, true}, {window, 3}]),
    ?assertEqual([<<"hello\n">>, <<"world\n">>, {exit, 0}], collect(S)).

long_line_comes_in_pieces_test() ->
    {ok, S} = corral_stream:open("printf", ["abcdefghij\\nk"], [{lines, true}, {max_line_length, 4}]),
    ?assertEqual([<<"abcd">>, <<"efgh">>, <<"ij\n">>, <<"k">>, {exit, 0}], collect(S)).

%% A line far longer than the window, from a child that stays: the bytes of
%% the partial line are acknowledged while it waits for its end, or the
%% driver would stop reading.
line_longer_than_the_window_test() ->
    Script = "head -c 5000 /dev/zero | tr '\\0' x; echo; sleep 30",
    {ok, S0} = corral_stream:open("sh", ["-c", Script], [{lines, true}, {window, 100}]),
    {Line, S} = corral_stream:next(S0),
    ?assertEqual(<<(binary:copy(<<"x">>, 5000))/binary, "\n">>, Line),
    ok = corral_stream:close(S).

%% close/1 is the owner's, as corral:stop/1 is: another process gets
%% {error, not_owner}, and the child and its input feeder carry on.
close_by_another_process_stops_nothing_test() ->
    Me = self(),
    Input = fun(Sink) ->
        ok = Sink(<<"a\n">>),
        Me ! {feeder, self()},
        receive
            go -> ok
        end,
        ok = Sink(<<"b\n">>)
    end,
    {ok, S} = corral_stream:open("cat", [], [{input, Input}]),
    Feeder =
        receive
            {feeder, F} -> F
        end,
    {ok, OsPid} = corral_stream:os_pid(S),
    {Pid, Ref} = spawn_monitor(fun() -> exit({closed, corral_stream:close(S)}) end),
    receive
        {'DOWN', Ref, process, Pid, Reason} -> ?assertEqual({closed, {error, not_owner}}, Reason)
    end,
    ?assertEqual({ok, OsPid}, corral_stream:os_pid(S)),
    ?assert(is_process_alive(Feeder)),
    Feeder ! go,
    Elements = collect(S),
    ?assertEqual(<<"a\nb\n">>, out(Elements)),
    ?assertEqual({exit, 0}, lists:last(Elements)).

lines_per_stream_with_consume_test() ->
    Script = "printf 'o1\\no'; printf 'e1\\ne' >&2; sleep 0.1; printf '2\\n'; printf '2\\n' >&2",
    {ok, S} = corral_stream:open("sh", ["-c", Script], [{lines, true}, {stderr, consume}]),
    Elements = collect(S),
    ?assertEqual([{stdout, <<"o1\n">>}, {stdout, <<"o2\n">>}], [E || {stdout, _} = E <- Elements]),
    ?assertEqual([{stderr, <<"e1\n">>}, {stderr, <<"e2\n">>}], [E || {stderr, _} = E <- Elements]),
    ?assertEqual({exit, 0}, lists:last(Elements)).

lines_fold_test() ->
    Count = fun(_Line, N) -> {cont, N + 1} end,
    ?assertEqual({1000, 0}, corral_stream:fold("seq", ["1", "1000"], [{lines, true}], Count, 0)).
